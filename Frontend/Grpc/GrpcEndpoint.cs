using Grpc.AspNetCore.Server;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Hosting;

namespace StreamInfer.Frontend.Grpc;

/// <summary>
/// Where and how the gRPC service is served: its own Kestrel endpoint at <see cref="FrontendOptions.GrpcUrl"/>, HTTP/2
/// only (h2c: a cleartext port speaks HTTP/1.1 or HTTP/2, not both), beside the HTTP/1.1 endpoints of <c>Urls</c>.
/// </summary>
internal static class GrpcEndpoint
{
    /// <summary>The Kestrel endpoint's name; it sorts after <see cref="HttpEndpointPrefix"/>'s, so the HTTP addresses
    /// are listed first.</summary>
    private const string GrpcEndpointName = "KServeGrpc";

    private const string HttpEndpointPrefix = "Http";

    /// <summary>
    /// Adds the gRPC endpoint to Kestrel's configuration when <see cref="FrontendOptions.GrpcUrl"/> is set. Kestrel
    /// serves either <c>Urls</c> or its configured endpoints, never both, so unless endpoints are configured already,
    /// each of <c>Urls</c> (from any source: appsettings, the environment, <c>--urls</c>) becomes one as well.
    /// </summary>
    public static void ListenForGrpc(this WebApplicationBuilder builder)
    {
        var configuration = builder.Configuration;
        var grpcUrl = configuration[$"{FrontendOptions.Section}:{nameof(FrontendOptions.GrpcUrl)}"];
        if (string.IsNullOrEmpty(grpcUrl) || !Uri.TryCreate(grpcUrl, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp)
        {
            // Off, or invalid: the options' validation says why at start.
            return;
        }

        var endpoints = new Dictionary<string, string?>
        {
            [$"Kestrel:Endpoints:{GrpcEndpointName}:Url"] = grpcUrl,
            [$"Kestrel:Endpoints:{GrpcEndpointName}:Protocols"] = "Http2",
        };
        if (!configuration.GetSection("Kestrel:Endpoints").GetChildren().Any())
        {
            var urls = HttpUrls(configuration);
            for (var i = 0; i < urls.Length; i++)
            {
                endpoints[$"Kestrel:Endpoints:{HttpEndpointPrefix}{i}:Url"] = urls[i];
            }

            // Emptied so that Kestrel does not warn that its endpoints replace them.
            endpoints[WebHostDefaults.ServerUrlsKey] = string.Empty;
            endpoints[WebHostDefaults.HttpPortsKey] = string.Empty;
            endpoints[WebHostDefaults.HttpsPortsKey] = string.Empty;
        }

        configuration.AddInMemoryCollection(endpoints);
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
