using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Configuration;

namespace StreamInfer.Grains.Hosting;

/// <summary>How a silo, and a frontend that is only a client, find their cluster.</summary>
public static partial class StreamInferClustering
{
    /// <summary>
    /// Localhost clustering when <see cref="ClusterEndpointOptions.Redis"/> is empty (the embedded default); otherwise
    /// Redis membership, endpoints on <see cref="ClusterEndpointOptions.AdvertisedAddress"/> (listening there only,
    /// unless <see cref="ClusterEndpointOptions.ListenOnAnyAddress"/>), the configured silo name, and failure detection
    /// tuned so a dead silo's requests end within seconds. TLS when <see cref="ClusterEndpointOptions.Tls"/> has a
    /// certificate.
    /// </summary>
    public static ISiloBuilder UseStreamInferClustering(this ISiloBuilder silo, ClusterEndpointOptions endpoint)
    {
        silo.UseStreamInferTls(endpoint.Tls);
        if (!endpoint.UsesRedis)
        {
            return silo.UseLocalhostClustering(endpoint.SiloPort, endpoint.GatewayPort, null, endpoint.ServiceId, endpoint.ClusterId);
        }

        silo.Configure<ClusterOptions>(o =>
        {
            o.ClusterId = endpoint.ClusterId;
            o.ServiceId = endpoint.ServiceId;
        });
        if (!endpoint.Kubernetes)
        {
            // Under Kubernetes the hosting package sets address, name and ids from the pod.
            silo.ConfigureEndpoints(IPAddress.Parse(endpoint.AdvertisedAddress), endpoint.SiloPort, endpoint.GatewayPort, endpoint.ListenOnAnyAddress);
            if (!string.IsNullOrWhiteSpace(endpoint.SiloName))
            {
                silo.Configure<SiloOptions>(o => o.SiloName = endpoint.SiloName);
            }
        }
        else if (!endpoint.ListenOnAnyAddress)
        {
            // The hosting package listens on every address of the pod; after it has set the pod's IP, listen there only.
            silo.Services.PostConfigure<EndpointOptions>(o =>
            {
                if (o.AdvertisedIPAddress is { } address)
                {
                    o.SiloListeningEndpoint = new IPEndPoint(address, o.SiloPort);
                    o.GatewayListeningEndpoint = o.GatewayPort > 0 ? new IPEndPoint(address, o.GatewayPort) : null;
                }
            });
        }

        silo.Configure<ClusterMembershipOptions>(o =>
        {
            o.ProbeTimeout = endpoint.ProbeTimeout;
            o.NumMissedProbesLimit = endpoint.MissedProbesLimit;
        });
        return silo.UseRedisClustering(endpoint.Redis!);
    }

    /// <summary>
    /// A frontend without a co-hosted silo: gateways from the Redis membership, re-read every
    /// <see cref="ClusterEndpointOptions.GatewayListRefreshPeriod"/> so that it spreads its calls over every silo up;
    /// TLS with the cluster certificate when <see cref="ClusterEndpointOptions.Tls"/> has one.
    /// </summary>
    public static IClientBuilder UseStreamInferClustering(this IClientBuilder client, ClusterEndpointOptions endpoint)
    {
        client.UseStreamInferTls(endpoint.Tls);
        if (!endpoint.UsesRedis)
        {
            client.UseLocalhostClustering(endpoint.GatewayPort, endpoint.ServiceId, endpoint.ClusterId);
        }
        else
        {
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = endpoint.ClusterId;
                o.ServiceId = endpoint.ServiceId;
            });
            client.Configure<GatewayOptions>(o => o.GatewayListRefreshPeriod = endpoint.GatewayListRefreshPeriod);
            client.UseRedisClustering(endpoint.Redis!);
        }

        client.Services.AddSingleton<IClientConnectionRetryFilter, KeepConnecting>();
        return client;
    }

    /// <summary>
    /// A frontend started before (or while) its silos start keeps trying to connect, once a second, rather than failing
    /// its start: the order in which a deployment brings processes up does not matter.
    /// </summary>
    private sealed partial class KeepConnecting(ILogger<KeepConnecting> logger) : IClientConnectionRetryFilter
    {
        private int _attempts;

        public async Task<bool> ShouldRetryConnectionAttempt(Exception exception, CancellationToken cancellationToken)
        {
            if (Interlocked.Increment(ref _attempts) % 10 == 1)
            {
                LogWaiting(logger, _attempts, exception.Message);
            }

            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            return !cancellationToken.IsCancellationRequested;
        }

        [LoggerMessage(Level = LogLevel.Warning, Message = "No silo of the cluster answers yet (attempt {Attempt}): {Reason}; retrying every second")]
        private static partial void LogWaiting(ILogger logger, int attempt, string reason);
    }

    /// <summary>Reads the section, with defaults when absent. Read before the host is built (it chooses the clustering),
    /// so a value out of range throws here, every violation named, and the process does not start.</summary>
    public static ClusterEndpointOptions Read(IConfiguration configuration)
    {
        var options = configuration.GetSection(ClusterEndpointOptions.Section).Get<ClusterEndpointOptions>() ?? new ClusterEndpointOptions();
        var result = new ClusterEndpointOptionsValidator().Validate(null, options);
        return result.Failed
            ? throw new OptionsValidationException(ClusterEndpointOptions.Section, typeof(ClusterEndpointOptions), result.Failures)
            : options;
    }
}
