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

    /// <summary>Events a pulling agent reads from its queue in one go. Range: [1, 10000]. Default 256.</summary>
    public int ReadBatchSize { get; set; } = 256;
}
