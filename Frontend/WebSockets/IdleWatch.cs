using StreamInfer.Frontend.Hosting;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>
/// Ends a WebSocket connection that has been idle for <see cref="FrontendOptions.IdleTimeout"/>: no whole message received
/// (<see cref="Touch"/>) and no request in flight. A timer of its own wakes once per timeout, not per message: a busy
/// connection is looked at again a whole timeout later. When idle, <c>close</c> queues the close; a client that has not
/// answered it within <see cref="CloseHandshake"/> is dropped with <c>abort</c>.
/// </summary>
internal sealed class IdleWatch : IDisposable
{
    /// <summary>How long a client may take to answer the close.</summary>
    public static readonly TimeSpan CloseHandshake = TimeSpan.FromSeconds(2);

    private readonly TimeSpan _timeout;
    private readonly TimeProvider _time;
    private readonly Func<bool> _busy;
    private readonly Func<bool> _close;
    private readonly Action _abort;
    private readonly ITimer? _timer;
    private long _lastActive;
    private bool _closing;

    /// <param name="timeout">Idle time allowed; zero: never closed for it.</param>
    /// <param name="time">The clock.</param>
    /// <param name="busy">Whether a request is in flight.</param>
    /// <param name="close">Queues the close; false when it could not be (the client is dropped at once).</param>
    /// <param name="abort">Drops the connection.</param>
    public IdleWatch(TimeSpan timeout, TimeProvider time, Func<bool> busy, Func<bool> close, Action abort)
    {
        _timeout = timeout;
        _time = time;
        _busy = busy;
        _close = close;
        _abort = abort;
        _lastActive = time.GetTimestamp();
        if (timeout > TimeSpan.Zero)
        {
            _timer = time.CreateTimer(static s => ((IdleWatch)s!).Fire(), this, timeout, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>A message arrived whole.</summary>
    public void Touch() => Volatile.Write(ref _lastActive, _time.GetTimestamp());

    public void Dispose() => _timer?.Dispose();

    private void Fire()
    {
        try
        {
            Check();
        }
        catch (ObjectDisposedException)
        {
            // The connection ended meanwhile.
        }
    }

    private void Check()
    {
        if (_closing)
        {
            // The close went out a handshake ago and the connection is still here.
            _abort();
            return;
        }

        if (_busy())
        {
            Touch();
        }

        var idle = _time.GetElapsedTime(Volatile.Read(ref _lastActive));
        if (idle < _timeout)
        {
            _timer!.Change(_timeout - idle, Timeout.InfiniteTimeSpan);
            return;
        }

        _closing = true;
        if (_close())
        {
            _timer!.Change(CloseHandshake, Timeout.InfiniteTimeSpan);
        }
        else
        {
            _abort();
        }
    }
}
