namespace StreamInfer.Grains.Options;

/// <summary>
/// The clock of a silo's timers. Section <c>StreamInfer:Streams</c>: named when it also tuned the delivery streams, and
/// kept so that existing configurations still apply.
/// </summary>
public sealed class TimerOptions
{
    public const string Section = "StreamInfer:Streams";

    /// <summary>
    /// Drive Orleans' grain timers and the StreamInfer grains' timers with <see cref="Clocks.PreciseTimeProvider"/>
    /// instead of .NET's timers, which fire no faster than every few milliseconds. It paces itself while the grid is
    /// idle, so the precision costs no idle CPU. Default true: see docs/decisions.md.
    /// </summary>
    public bool PreciseTimers { get; set; } = true;
}
