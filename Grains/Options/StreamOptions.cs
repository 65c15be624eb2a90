namespace StreamInfer.Grains.Options;

/// <summary>How results and tokens travel from a batcher back to the frontend that holds the client (D9).</summary>
public enum DeliveryTransport
{
    /// <summary>
    /// The batcher calls the frontend's grain observer, once per batch step per frontend. No polling and no stream
    /// queue on a third silo: a delivery either arrives or its call fails and is retried. The default.
    /// </summary>
    Observer,

    /// <summary>
    /// Orleans memory streams keyed by frontend (D3): pulled by agents every <see cref="DeliveryStreamOptions.PollPeriod"/>;
    /// what a queue holds is lost when its silo dies.
    /// </summary>
    Stream,
}

/// <summary>
/// How results get back to frontends, and the tuning of the delivery streams (Orleans memory streams) when they carry
/// them. Section <c>StreamInfer:Streams</c>, read by silos and frontends alike: set it the same everywhere. See
/// docs/decisions.md (D3, D9) for the measurements behind the defaults.
/// </summary>
public sealed class DeliveryStreamOptions
{
    public const string Section = "StreamInfer:Streams";

    /// <summary>
    /// <see cref="DeliveryTransport.Observer"/> (default) or <see cref="DeliveryTransport.Stream"/>. A frontend names its
    /// observer in each request only with Observer; a silo polls the delivery streams every <see cref="PollPeriod"/>
    /// only with Stream (with Observer, every 100 ms, Orleans' default: they carry nothing then).
    /// </summary>
    public DeliveryTransport Transport { get; set; } = DeliveryTransport.Observer;

    /// <summary>The pulling agents' poll period in effect for <see cref="Transport"/>.</summary>
    public TimeSpan EffectivePollPeriod => Transport == DeliveryTransport.Stream ? PollPeriod : TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// With <see cref="DeliveryTransport.Stream"/>: how long a pulling agent waits after finding its queue empty before reading again. Orleans' default is 100 ms,
    /// which alone would put ~50 ms on every answer; timers fire no faster than ~4.4 ms here, so 1 ms means "every tick".
    /// Range: [1 ms, 1 s]. Default 1 ms.
    /// </summary>
    public TimeSpan PollPeriod { get; set; } = TimeSpan.FromMilliseconds(1);

    /// <summary>
    /// Queues (each with its own pulling agent) the streams are spread over. Each idle agent costs CPU at every poll, so
    /// keep it small. Range: [1, 64]. Default 2.
    /// </summary>
    public int Partitions { get; set; } = 2;

    /// <summary>
    /// Drive grain timers (and so the pulling agents) and the StreamInfer grains' timers with
    /// <see cref="Clocks.PreciseTimeProvider"/> instead of .NET's timers, which fire no faster than every ~4.4 ms here.
    /// It paces itself while the grid is idle, so the precision costs no idle CPU. Default true: see docs/decisions.md.
    /// </summary>
    public bool PreciseTimers { get; set; } = true;

    /// <summary>Events a pulling agent reads from its queue in one go. Range: [1, 10000]. Default 256.</summary>
    public int ReadBatchSize { get; set; } = 256;
}
