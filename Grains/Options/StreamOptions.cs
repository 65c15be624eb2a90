namespace StreamInfer.Grains.Options;

/// <summary>
/// Tuning of the delivery streams (Orleans memory streams) that carry results back to frontends.
/// Section <c>StreamInfer:Streams</c>. See docs/decisions.md for the measurements behind the defaults.
/// </summary>
public sealed class DeliveryStreamOptions
{
    public const string Section = "StreamInfer:Streams";

    /// <summary>
    /// How long a pulling agent waits after finding its queue empty before reading again. Orleans' default is 100 ms,
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
