using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using StreamInfer.Grains.Hosting;

namespace StreamInfer.Silo;

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
        var endpoint = builder.Configuration.GetSection(ClusterEndpointOptions.Section).Get<ClusterEndpointOptions>() ?? new ClusterEndpointOptions();
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering(endpoint.SiloPort, endpoint.GatewayPort, null, endpoint.ServiceId, endpoint.ClusterId);
            silo.AddStreamInfer(builder.Configuration);
        });
        return builder.Build();
    }
}
