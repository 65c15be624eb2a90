using Grpc.AspNetCore.Server;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Hosting;

namespace StreamInfer.Frontend.Grpc;

/// <summary>
/// Where and how the gRPC service is served: its own port at <see cref="FrontendOptions.GrpcUrl"/>, HTTP/2 only (h2c:
/// a cleartext port speaks HTTP/1.1 or HTTP/2, not both), beside the HTTP/1.1 ports of <c>Urls</c>.
/// </summary>
internal static class GrpcEndpoint
{
    /// <summary>
    /// Adds the gRPC port when <see cref="FrontendOptions.GrpcUrl"/> is set. Kestrel serves either <c>Urls</c> or the
    /// endpoints configured for it, never both: the gRPC URL joins <c>Urls</c> (from any source: appsettings, the
    /// environment, <c>--urls</c>), and the endpoint defaults make the one on its port HTTP/2 only; where Kestrel
    /// endpoints are configured instead, it joins those.
    /// </summary>
    public static void ListenForGrpc(this WebApplicationBuilder builder)
    {
        var configuration = builder.Configuration;
        var grpcUrl = configuration[$"{FrontendOptions.Section}:{nameof(FrontendOptions.GrpcUrl)}"];
        if (string.IsNullOrEmpty(grpcUrl) || !Uri.TryCreate(grpcUrl, UriKind.Absolute, out var grpc) || grpc.Scheme != Uri.UriSchemeHttp)
        {
            // Off, or invalid: the options' validation says why at start.
            return;
        }

        if (configuration.GetSection("Kestrel:Endpoints").GetChildren().Any())
        {
            configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Kestrel:Endpoints:KServeGrpc:Url"] = grpcUrl,
                ["Kestrel:Endpoints:KServeGrpc:Protocols"] = "Http2",
            });
            return;
        }

        var urls = HttpUrls(configuration);
        if (grpc.Port == 0 || urls.Any(u => BindingAddress.Parse(u).Port == grpc.Port))
        {
            throw new InvalidOperationException($"{FrontendOptions.Section}:GrpcUrl '{grpcUrl}' needs a port of its own, not 0 and none of Urls ({string.Join(";", urls)}).");
        }

        configuration.AddInMemoryCollection(new Dictionary<string, string?> { [WebHostDefaults.ServerUrlsKey] = string.Join(';', [.. urls, grpcUrl]) });
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureEndpointDefaults(endpoint =>
        {
            if (endpoint.IPEndPoint?.Port == grpc.Port)
            {
                endpoint.Protocols = HttpProtocols.Http2;
            }
        }));
    }

    /// <summary>The gRPC service, its message limits taken from the frontend's options.</summary>
    public static IServiceCollection AddStreamInferGrpc(this IServiceCollection services)
    {
        services.AddGrpc();
        services.AddOptions<GrpcServiceOptions>().Configure<IOptions<FrontendOptions>>((grpc, frontend) =>
        {
            grpc.MaxReceiveMessageSize = frontend.Value.MaxBinaryBytes;
            // Answers are as large as the model's outputs; the client sets what it accepts.
            grpc.MaxSendMessageSize = null;
        });
        return services;
    }

    /// <summary>The addresses Kestrel would have served for <c>Urls</c> (or the HTTP(S) ports, or its default).</summary>
    private static string[] HttpUrls(IConfiguration configuration)
    {
        static string[] Split(string? list) => list?.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];

        var urls = Split(configuration[WebHostDefaults.ServerUrlsKey]);
        if (urls.Length > 0)
        {
            return urls;
        }

        urls = [.. Split(configuration[WebHostDefaults.HttpPortsKey]).Select(p => $"http://*:{p}"), .. Split(configuration[WebHostDefaults.HttpsPortsKey]).Select(p => $"https://*:{p}")];
        return urls.Length > 0 ? urls : ["http://localhost:5000"];
    }
}
