namespace StreamInfer.Grains.Sessions;

/// <summary>
/// The slow-consumer watermark shared by a session's backlog and a connection's send queue: reports a crossing of 80%
/// of capacity once, and re-arms when the count falls below half. Thread-safe.
/// </summary>
public sealed class SlowConsumerMark
{
    private int _armed = 1;

    public SlowConsumerMark(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        HighWater = Math.Max(1, (int)Math.Ceiling(capacity * 0.8));
        LowWater = capacity / 2;
    }

    /// <summary>The count at which the warning fires (80% of capacity, rounded up).</summary>
    public int HighWater { get; }

    /// <summary>The warning re-arms when the count falls below this (half the capacity).</summary>
    public int LowWater { get; }

    /// <summary>Reports the count now; true exactly once per crossing of <see cref="HighWater"/>.</summary>
    public bool Observe(int count)
    {
        if (count >= HighWater)
        {
            return Interlocked.Exchange(ref _armed, 0) == 1;
        }

        if (count < LowWater && Volatile.Read(ref _armed) == 0)
        {
            Volatile.Write(ref _armed, 1);
        }

        return false;
    }
}
