using System.Net.WebSockets;
using StreamInfer.Frontend.Hosting;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>
/// Ends a WebSocket connection that is idle or slow to finish a message. Idle: nothing dispatched for
/// <see cref="FrontendOptions.IdleTimeout"/> and no request in flight; a timer of its own wakes once per timeout, not per
/// message. Slow: a message not whole <see cref="FrontendOptions.MessageReceiveTimeout"/> after its first frame, however
/// busy the connection is. Either way <c>close</c> queues the close, and a client that has not answered it within
/// <see cref="CloseHandshake"/> is dropped with <c>abort</c>. The decision to close and the receive loop's dispatch of a
/// message exclude each other (<see cref="TryBeginDispatch"/>): once closing, nothing more is dispatched, so every request
/// accepted is answered before the close.
/// </summary>
internal sealed class IdleWatch : IDisposable
{
    /// <summary>How long a client may take to answer the close.</summary>
    public static readonly TimeSpan CloseHandshake = TimeSpan.FromSeconds(2);

    private readonly Lock _gate = new();
    private readonly TimeSpan _timeout;
    private readonly TimeSpan _messageTimeout;
    private readonly TimeProvider _time;
    private readonly Func<bool> _busy;
    private readonly Func<WebSocketCloseStatus, string, bool> _close;
    private readonly Action _abort;
    private readonly ITimer? _idleTimer;
    private readonly ITimer? _messageTimer;
    private long _lastActive;
    private long _messageStarted;
    private bool _dispatching;
    private volatile bool _closing;

    /// <param name="timeout">Idle time allowed; zero: never closed for it.</param>
    /// <param name="messageTimeout">Time allowed for a message to arrive whole; zero: no limit.</param>
    /// <param name="time">The clock.</param>
    /// <param name="busy">Whether a request is in flight.</param>
    /// <param name="close">Queues the close with a status and reason; false when it could not be (the client is dropped at once).</param>
    /// <param name="abort">Drops the connection.</param>
    public IdleWatch(TimeSpan timeout, TimeSpan messageTimeout, TimeProvider time, Func<bool> busy, Func<WebSocketCloseStatus, string, bool> close, Action abort)
    {
        _timeout = timeout;
        _messageTimeout = messageTimeout;
        _time = time;
        _busy = busy;
        _close = close;
        _abort = abort;
        _lastActive = time.GetTimestamp();
        if (timeout > TimeSpan.Zero)
        {
            _idleTimer = time.CreateTimer(static s => ((IdleWatch)s!).Fire(idle: true), this, timeout, Timeout.InfiniteTimeSpan);
        }

        if (messageTimeout > TimeSpan.Zero)
        {
            _messageTimer = time.CreateTimer(static s => ((IdleWatch)s!).Fire(idle: false), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Whether the close has been decided: the receive loop dispatches nothing more.</summary>
    public bool Closing => _closing;

    /// <summary>A message began and is not whole yet: its deadline starts now.</summary>
    public void MessageBegan()
    {
        if (_messageTimer is null)
        {
            return;
        }

        lock (_gate)
        {
            _messageStarted = _time.GetTimestamp();
            if (!_closing)
            {
                _messageTimer.Change(_messageTimeout, Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>A message arrived whole: false when the connection is closing (drop it), else it may be dispatched, and
    /// the connection is not closed for idleness until <see cref="EndDispatch"/>.</summary>
    public bool TryBeginDispatch()
    {
        lock (_gate)
        {
            _messageStarted = 0;
            if (_closing)
            {
                return false;
            }

            _dispatching = true;
            return true;
        }
    }

    /// <summary>The message is handled (a request made of it is in flight); when <paramref name="active"/> (not a
    /// message refused unread) the connection was active now.</summary>
    public void EndDispatch(bool active)
    {
        lock (_gate)
        {
            _dispatching = false;
            if (active)
            {
                _lastActive = _time.GetTimestamp();
            }
        }
    }

    public void Dispose()
    {
        _idleTimer?.Dispose();
        _messageTimer?.Dispose();
    }

    private void Fire(bool idle)
    {
        try
        {
            Check(idle ? _idleTimer! : _messageTimer!, idle);
        }
        catch (ObjectDisposedException)
        {
            // The connection ended meanwhile.
        }
    }

    private void Check(ITimer timer, bool idle)
    {
        WebSocketCloseStatus status;
        string reason;
        var closed = false;
        lock (_gate)
        {
            if (_closing)
            {
                closed = true;
                status = default;
                reason = string.Empty;
            }
            else
            {

                var wait = idle ? IdleLeft() : MessageLeft();
                if (wait != TimeSpan.Zero)
                {
                    timer.Change(wait, Timeout.InfiniteTimeSpan);
                    return;
                }

                _closing = true;
                (status, reason) = idle
                    ? (WebSocketCloseStatus.NormalClosure, $"idle for {_timeout.TotalSeconds:0.#} s")
                    : (WebSocketCloseStatus.PolicyViolation, $"message not completed in {_messageTimeout.TotalSeconds:0.#} s");
            }
        }

        if (closed)
        {
            // The close went out a handshake ago and the connection is still here.
            _abort();
        }
        else if (_close(status, reason))
        {
            timer.Change(CloseHandshake, Timeout.InfiniteTimeSpan);
        }
        else
        {
            _abort();
        }
    }

    /// <summary>Time until the connection counts as idle; zero when it does now. Under the gate.</summary>
    private TimeSpan IdleLeft()
    {
        if (_dispatching || _busy())
        {
            _lastActive = _time.GetTimestamp();
            return _timeout;
        }

        var idle = _time.GetElapsedTime(_lastActive);
        return idle < _timeout ? _timeout - idle : TimeSpan.Zero;
    }

    /// <summary>Time left to the message being read; zero when past it; infinite when none is being read. Under the gate.</summary>
    private TimeSpan MessageLeft()
    {
        if (_messageStarted == 0)
        {
            return Timeout.InfiniteTimeSpan;
        }

        var taken = _time.GetElapsedTime(_messageStarted);
        return taken < _messageTimeout ? _messageTimeout - taken : TimeSpan.Zero;
    }
}
