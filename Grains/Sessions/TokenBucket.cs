namespace StreamInfer.Grains.Sessions;

/// <summary>
/// A token bucket on an injected clock: <see cref="Burst"/> tokens at most, refilled continuously at
/// <see cref="RatePerSecond"/>. Not thread-safe: owned by one grain activation.
/// </summary>
public sealed class TokenBucket
{
    private readonly TimeProvider _time;
    private double _tokens;
    private long _lastRefill;

    public TokenBucket(double ratePerSecond, double burst, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ratePerSecond);
        ArgumentOutOfRangeException.ThrowIfLessThan(burst, 1);
        RatePerSecond = ratePerSecond;
        Burst = burst;
        _time = time;
        _tokens = burst;
        _lastRefill = time.GetTimestamp();
    }

    public double RatePerSecond { get; }

    public double Burst { get; }

    /// <summary>Tokens available now (fractional).</summary>
    public double Available
    {
        get
        {
            Refill();
            return _tokens;
        }
    }

    /// <summary>
    /// Takes one token. When none is available, returns false and the exact time until one will be: (1 - tokens) / rate,
    /// rounded up to whole milliseconds (at least 1 ms).
    /// </summary>
    public bool TryTake(out TimeSpan retryAfter)
    {
        Refill();
        if (_tokens >= 1)
        {
            _tokens -= 1;
            retryAfter = TimeSpan.Zero;
            return true;
        }

        var ms = Math.Max(1, Math.Ceiling((1 - _tokens) / RatePerSecond * 1000));
        retryAfter = TimeSpan.FromMilliseconds(ms);
        return false;
    }

    /// <summary>Gives back a token taken for a request that was then refused downstream.</summary>
    public void Refund() => _tokens = Math.Min(Burst, _tokens + 1);

    private void Refill()
    {
        var now = _time.GetTimestamp();
        var elapsed = _time.GetElapsedTime(_lastRefill, now);
        _lastRefill = now;
        if (elapsed > TimeSpan.Zero)
        {
            _tokens = Math.Min(Burst, _tokens + (elapsed.TotalSeconds * RatePerSecond));
        }
    }
}
