namespace StreamInfer.Grains.Clocks;

/// <summary>
/// Another <see cref="TimeProvider"/> with its timestamps counted from this provider's creation instead of from the
/// inner clock's origin (the machine's boot, for the system clock). Wall-clock time, timers and the timestamp frequency
/// are the inner provider's; only the zero of <see cref="GetTimestamp"/> moves, so elapsed times between two timestamps
/// are unchanged, and an elapsed time measured from a timestamp that was never set (0) is the time since the silo was
/// built rather than the machine's uptime.
/// </summary>
public sealed class RebasedTimeProvider : TimeProvider
{
    private readonly TimeProvider _inner;
    private readonly long _origin;

    /// <summary>Creates a provider whose timestamps start at zero now.</summary>
    public RebasedTimeProvider(TimeProvider inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        _inner = inner;
        _origin = inner.GetTimestamp();
    }

    public override long TimestampFrequency => _inner.TimestampFrequency;

    public override TimeZoneInfo LocalTimeZone => _inner.LocalTimeZone;

    public override long GetTimestamp() => _inner.GetTimestamp() - _origin;

    public override DateTimeOffset GetUtcNow() => _inner.GetUtcNow();

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        => _inner.CreateTimer(callback, state, dueTime, period);
}
