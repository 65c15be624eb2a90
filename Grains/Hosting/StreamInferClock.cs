namespace StreamInfer.Grains.Hosting;

/// <summary>
/// The DI key of the <see cref="TimeProvider"/> the StreamInfer grains measure with (token buckets, MaxWait, deadlines,
/// the batcher's wake-up timer). It defaults to the host's clock; tests put a virtual clock here without moving
/// Orleans' own timers (membership, its grain timers) onto it (docs/decisions.md D2).
/// </summary>
public static class StreamInferClock
{
    public const string Key = "StreamInfer.Grains";
}
