using System.Net;
using Microsoft.Extensions.Options;

namespace StreamInfer.Grains.Hosting;

/// <summary>
/// Where a silo listens and which cluster it forms or joins: the embedded default's co-hosted silo, a standalone silo,
/// and (the cluster part) a frontend that is an Orleans client. Section <c>StreamInfer:Orleans</c>.
/// </summary>
public sealed class ClusterEndpointOptions
{
    public const string Section = "StreamInfer:Orleans";

    /// <summary>Silo-to-silo port. Range: [1, 65535]. Default 11111.</summary>
    public int SiloPort { get; set; } = 11111;

    /// <summary>Port Orleans clients (frontends in a cluster) connect to. Range: [1, 65535]. Default 30000.</summary>
    public int GatewayPort { get; set; } = 30000;

    /// <summary>
    /// The cluster's id: silos and clients with another id do not join or connect. Default <c>streaminfer-dev</c>; a
    /// deployment sets its own (with <see cref="Tls"/>, a stranger needs the certificate as well as the ids).
    /// </summary>
    public string ClusterId { get; set; } = "streaminfer-dev";

    /// <summary>The service's id (grain state is keyed by it). Default <c>streaminfer</c>.</summary>
    public string ServiceId { get; set; } = "streaminfer";

    /// <summary>
    /// Redis connection string (StackExchange.Redis syntax, e.g. <c>127.0.0.1:6379</c>). Empty (the default): localhost
    /// clustering and in-memory grain state, one silo. Set: the silo joins the cluster whose membership is kept in that
    /// Redis, keeps grain state (model versions) there, and a frontend without a co-hosted silo
    /// finds its gateways there.
    /// </summary>
    public string? Redis { get; set; }

    /// <summary>
    /// The address other silos and clients reach this silo at, with Redis clustering: an IP address. Default 127.0.0.1
    /// (every silo on one machine); a container or VM gives its own routable address (Kubernetes sets it from the pod's IP).
    /// </summary>
    public string AdvertisedAddress { get; set; } = "127.0.0.1";

    /// <summary>
    /// Whether the silo and gateway ports listen on every address of the host rather than only the advertised one
    /// (under Kubernetes: the pod's IP). Default false: a silo is not reachable on interfaces it does not advertise.
    /// </summary>
    public bool ListenOnAnyAddress { get; set; }

    /// <summary>TLS on silo-to-silo and client-to-gateway connections (<c>StreamInfer:Orleans:Tls</c>); off by default.</summary>
    public ClusterTlsOptions Tls { get; set; } = new();

    /// <summary>
    /// This silo's name: unique in the cluster, stable across restarts (batchers are keyed by it, so a restarted silo
    /// takes its batchers back). Empty: Orleans picks one. Kubernetes uses the pod's name.
    /// </summary>
    public string? SiloName { get; set; }

    /// <summary>
    /// How long a silo waits for a probe's answer before counting it missed; after <see cref="MissedProbesLimit"/>
    /// missed probes (and the votes of other silos) a silo is declared dead and its requests end. Range: [0.5 s, 60 s].
    /// Default 2 s (Orleans' own is 5 s: a dead silo's requests would wait 15 s or more to end).
    /// </summary>
    public TimeSpan ProbeTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Missed probes before a silo suspects another. Range: [1, 10]. Default 3.</summary>
    public int MissedProbesLimit { get; set; } = 3;

    /// <summary>
    /// How often a frontend that is only a client re-reads the silos' gateways from Redis. It spreads its calls over
    /// the gateways it knows; one that started while a single silo was up knows only that one until the next read, and
    /// stalls if that silo dies. Range: [0.1 s, 60 s]. Default 1 s (Orleans' own is a minute).
    /// </summary>
    public TimeSpan GatewayListRefreshPeriod { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Runs under Kubernetes (<c>Microsoft.Orleans.Hosting.Kubernetes</c>): names and addresses from the pod.</summary>
    public bool Kubernetes { get; set; }

    /// <summary>Whether Redis clustering is configured.</summary>
    public bool UsesRedis => !string.IsNullOrWhiteSpace(Redis);
}

/// <summary>Checks <see cref="ClusterEndpointOptions"/>, reporting every violation at once.</summary>
public sealed class ClusterEndpointOptionsValidator : IValidateOptions<ClusterEndpointOptions>
{
    public ValidateOptionsResult Validate(string? name, ClusterEndpointOptions o)
    {
        var errors = new List<string>();
        if (o.SiloPort is < 1 or > 65535)
        {
            errors.Add($"{ClusterEndpointOptions.Section}:SiloPort must be in [1, 65535]; got {o.SiloPort}.");
        }

        if (o.GatewayPort is < 1 or > 65535)
        {
            errors.Add($"{ClusterEndpointOptions.Section}:GatewayPort must be in [1, 65535]; got {o.GatewayPort}.");
        }

        if (o.UsesRedis && !o.Kubernetes && !IPAddress.TryParse(o.AdvertisedAddress, out _))
        {
            errors.Add($"{ClusterEndpointOptions.Section}:AdvertisedAddress must be an IP address; got '{o.AdvertisedAddress}'.");
        }

        if (o.ProbeTimeout < TimeSpan.FromMilliseconds(500) || o.ProbeTimeout > TimeSpan.FromSeconds(60))
        {
            errors.Add($"{ClusterEndpointOptions.Section}:ProbeTimeout must be in [0.5 s, 60 s]; got {o.ProbeTimeout}.");
        }

        if (o.MissedProbesLimit is < 1 or > 10)
        {
            errors.Add($"{ClusterEndpointOptions.Section}:MissedProbesLimit must be in [1, 10]; got {o.MissedProbesLimit}.");
        }

        if (o.GatewayListRefreshPeriod < TimeSpan.FromMilliseconds(100) || o.GatewayListRefreshPeriod > TimeSpan.FromSeconds(60))
        {
            errors.Add($"{ClusterEndpointOptions.Section}:GatewayListRefreshPeriod must be in [0.1 s, 60 s]; got {o.GatewayListRefreshPeriod}.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
