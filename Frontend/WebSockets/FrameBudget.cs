using StreamInfer.Frontend.Hosting;
using StreamInfer.Grains.Sessions;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>
/// A WebSocket connection's (or a gRPC stream's: one whole message at a time) budget of messages and bytes per second (<see cref="FrontendOptions.MaxFramesPerSecond"/>,
/// <see cref="FrontendOptions.MaxBytesPerSecond"/>, each with a second's worth of burst), taken when a message begins,
/// before anything of it is parsed, whatever it turns out to be: a request, a cancel, an invalid frame. A message's bytes
/// are counted as they are read (<see cref="Read"/>), and an empty frame costs a message's place: a large message may put
/// the budget in debt, and then the rest of it is read only once it has refilled (<see cref="WaitAsync"/>: the client is
/// held back through TCP), and a next message that begins meanwhile is refused. A connection refused without a second's
/// pause for <see cref="FrontendOptions.OverBudgetCloseAfter"/> is <see cref="Exhausted"/>. Used by the receive loop
/// only: not thread-safe.
/// </summary>
internal sealed class FrameBudget(FrontendOptions options, TimeProvider time)
{
    // Refusals further apart than this end a run of them: the client paused.
    private static readonly TimeSpan Pause = TimeSpan.FromSeconds(1);

    private readonly TokenBucket _frames = new(options.MaxFramesPerSecond, options.MaxFramesPerSecond, time);
    private readonly TokenBucket _bytes = new(options.MaxBytesPerSecond, options.MaxBytesPerSecond, time);
    private long _refusedSince = -1;
    private long _lastRefused;

    /// <summary>The connection has been over its budget, with no pause, for <see cref="FrontendOptions.OverBudgetCloseAfter"/>.</summary>
    public bool Exhausted { get; private set; }

    /// <summary>Takes a message's place as it begins, and counts its first fragment's <paramref name="bytes"/> either
    /// way; false, with the wait until one would fit, when over budget (judged before those bytes).</summary>
    public bool TryTake(int bytes, out TimeSpan retryAfter)
    {
        var taken = _bytes.TryTake(0, out retryAfter) && _frames.TryTake(1, out retryAfter);
        _bytes.Spend(bytes);
        if (taken)
        {
            return true;
        }

        var now = time.GetTimestamp();
        if (_refusedSince < 0 || time.GetElapsedTime(_lastRefused, now) > Pause)
        {
            _refusedSince = now;
        }

        _lastRefused = now;
        Exhausted = time.GetElapsedTime(_refusedSince, now) >= options.OverBudgetCloseAfter;
        return false;
    }

    /// <summary>Counts a read within a message: its bytes, or, for an empty frame, which carries none, a message's place.</summary>
    public void Read(int bytes)
    {
        if (bytes == 0)
        {
            _frames.Spend(1);
        }
        else
        {
            _bytes.Spend(bytes);
        }
    }

    /// <summary>Within a message: waits, before more of it is read, while the budget is in debt.</summary>
    public async ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        while (!_bytes.TryTake(0, out var retryAfter) || !_frames.TryTake(0, out retryAfter))
        {
            await Task.Delay(retryAfter, time, cancellationToken);
        }
    }
}
