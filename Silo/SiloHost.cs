using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using StreamInfer.Grains.Hosting;

namespace StreamInfer.Silo;

/// <summary>Where a standalone silo listens and which cluster it joins. Section <c>StreamInfer:Silo</c>.</summary>
public sealed class SiloEndpointOptions
{
    public const string Section = "StreamInfer:Silo";

    public int SiloPort { get; set; } = 11111;

    public int GatewayPort { get; set; } = 30000;

    public string ClusterId { get; set; } = "streaminfer-dev";

    public string ServiceId { get; set; } = "streaminfer";
}

/// <summary>
/// A standalone silo: the grains and devices without sockets. Localhost clustering at this stage; frontends reach it
/// as Orleans clients through its gateway port.
/// </summary>
public static class SiloHost
{
    public static IHost Build(string[] args, Action<HostApplicationBuilder>? configure = null)
    {
        var builder = Host.CreateApplicationBuilder(args);
        builder.Logging.AddFilter("Orleans", LogLevel.Warning).AddFilter("Polly", LogLevel.Warning);
        configure?.Invoke(builder);
        var endpoint = builder.Configuration.GetSection(SiloEndpointOptions.Section).Get<SiloEndpointOptions>() ?? new SiloEndpointOptions();
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering(endpoint.SiloPort, endpoint.GatewayPort, null, endpoint.ServiceId, endpoint.ClusterId);
            silo.AddStreamInfer(builder.Configuration);
        });
        return builder.Build();
    }
}
