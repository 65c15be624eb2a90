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
    public bool TryTake(out TimeSpan retryAfter) => TryTake(1, out retryAfter);

    /// <summary>
    /// Takes <paramref name="amount"/> tokens when that many are available (0: succeeds unless the bucket is in debt,
    /// see <see cref="Spend"/>); otherwise returns false and the exact time until they will be, rounded up to whole
    /// milliseconds (at least 1 ms).
    /// </summary>
    public bool TryTake(double amount, out TimeSpan retryAfter)
    {
        Refill();
        if (_tokens >= amount)
        {
            _tokens -= amount;
            retryAfter = TimeSpan.Zero;
            return true;
        }

        var ms = Math.Max(1, Math.Ceiling((amount - _tokens) / RatePerSecond * 1000));
        retryAfter = TimeSpan.FromMilliseconds(ms);
        return false;
    }

    /// <summary>
    /// Takes <paramref name="amount"/> tokens whether or not they are there, for what was only measured once done (the
    /// bytes of a message read): the bucket may go into debt, and nothing more can be taken until it has refilled.
    /// </summary>
    public void Spend(double amount)
    {
        Refill();
        _tokens -= amount;
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
