namespace StreamInfer.Grains.Hosting;

/// <summary>
/// Where a silo listens and which cluster it forms or joins: the embedded default's co-hosted silo and a standalone
/// silo alike. Section <c>StreamInfer:Orleans</c>. Localhost clustering at this stage.
/// </summary>
public sealed class ClusterEndpointOptions
{
    public const string Section = "StreamInfer:Orleans";

    /// <summary>Silo-to-silo port. Default 11111.</summary>
    public int SiloPort { get; set; } = 11111;

    /// <summary>Port Orleans clients (frontends in a cluster) connect to. Default 30000.</summary>
    public int GatewayPort { get; set; } = 30000;

    public string ClusterId { get; set; } = "streaminfer-dev";

    public string ServiceId { get; set; } = "streaminfer";
}
