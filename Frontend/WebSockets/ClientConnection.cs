using System.Net.WebSockets;
using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Requests;
using StreamInfer.Grains.Metrics;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>
/// One WebSocket client's transport: the receive loop reads each message (<see cref="MessageReader"/>: a text frame up
/// to <see cref="FrontendOptions.MaxFrameBytes"/>, a binary one up to <see cref="FrontendOptions.MaxBinaryBytes"/>, whose
/// bytes are taken from the connection's <see cref="FrontendOptions.MaxInFlightBytes"/> before the next message is read)
/// within the connection's <see cref="FrameBudget"/>, and hands it to the client's <see cref="ClientRequests"/>; the
/// send loop writes everything queued in its <see cref="FrameOutbox"/>. A client that stops reading is dropped; one that
/// stays over its budget, or idle (<see cref="IdleWatch"/>), is closed; at the end its session is closed, which cancels
/// its work in the grid (an API key's session, shared with the key's other connections, stays: only this connection's
/// requests are cancelled there).
/// </summary>
internal sealed partial class ClientConnection : IDisposable
{
    private readonly WebSocket _socket;
    private readonly RequestSubmitter _submitter;
    private readonly FrontendOptions _options;
    private readonly TimeProvider _time;
    private readonly GridMetrics _metrics;
    private readonly ILogger _logger;
    private readonly FrameOutbox _outbox;
    private readonly ClientRequests _requests;
    private readonly CancellationTokenSource _closing = new();
    private readonly FrameBudget _budget;
    private readonly IdleWatch _idle;
    private readonly MessageReader _reader;
    private volatile string? _closedFor;

    // Not disposed: submits still in flight release it after the connection ends, and a SemaphoreSlim without a wait
    // handle holds nothing that needs disposing.
    private readonly SemaphoreSlim _submitGate;
    private readonly bool _sharedSession;
    private volatile bool _finished;
    private volatile bool _draining;

    public ClientConnection(WebSocket socket, ClientIdentity client, RequestSubmitter submitter, FrontendOptions options, TimeProvider time, GridMetrics metrics, ILogger logger)
    {
        _socket = socket;
        var clientId = client.ConnectionSession();
        ClientId = clientId;
        _sharedSession = client.Keyed;
        _submitter = submitter;
        _options = options;
        _time = time;
        _metrics = metrics;
        _logger = logger;
        _outbox = new FrameOutbox(options.SendQueueCapacity, options.SendQueueBytes, DropSlowClient);
        _submitGate = new SemaphoreSlim(options.MaxConcurrentSubmits, options.MaxConcurrentSubmits);
        _requests = new ClientRequests(client, clientId, submitter, _outbox, _submitGate, new ByteBudget(options.MaxInFlightBytes), options.MaxFrameBytes, logger);
        _budget = new FrameBudget(options, time);
        _reader = new MessageReader(socket, options, _budget);
        _idle = new IdleWatch(options.IdleTimeout, options.MessageReceiveTimeout, time, () => _requests.Busy, CloseUnused, Abort);
    }

    public string ClientId { get; }

    /// <summary>Whether the connection still serves (its end has not begun).</summary>
    public bool IsOpen => !_finished;

    /// <summary>Bytes of the receive buffer held now: <see cref="MessageReader.BufferBytes"/> between messages.</summary>
    public int ReceiveBufferHeld => _reader.Held;

    /// <summary>The frontend is shutting down: warn the client; from now on its new requests are refused.</summary>
    public void BeginDrain(long drainMs)
    {
        _draining = true;
        _requests.BeginDrain();
        _outbox.Send(FrameWriter.Draining(drainMs, $"this frontend is shutting down: requests in flight finish (within {drainMs} ms), new ones are refused; then the connection closes. Reconnect, to another frontend."));
    }

    /// <summary>After the drain: close the socket (1001) once the frames already queued are sent.</summary>
    public void CloseGoingAway()
    {
        if (!_outbox.TryGoAway())
        {
            Abort();
        }
    }

    /// <summary>Drops the connection without a close handshake (the client did not answer ours).</summary>
    public void Abort()
    {
        try
        {
            _closing.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Already ended.
        }
    }

    public async Task RunAsync(CancellationToken aborted)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(aborted, _closing.Token);
        var openedAt = _time.GetTimestamp();
        LogOpened(_logger, ClientId);
        var sender = SendLoopAsync(linked.Token);
        try
        {
            await ReceiveLoopAsync(linked.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
            // The client went away or was dropped for not reading; either way its work is cancelled below.
        }
        finally
        {
            _finished = true;
            _idle.Dispose();
            _requests.Close();
            if (!_sharedSession)
            {
                await _submitter.CloseSessionAsync(ClientId);
            }

            _outbox.Complete();
            try
            {
                await sender.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
            }
            catch (TimeoutException)
            {
                // The peer stopped reading while we flushed: give up on it.
                _closing.Cancel();
                _socket.Abort();
            }

            await CloseSocketAsync();
            // One line per connection, at its end: how long it lasted and what it asked.
            LogClosed(_logger, ClientId, _time.GetElapsedTime(openedAt).TotalSeconds, _requests.Sent, _closing.IsCancellationRequested ? "dropped" : _draining ? "drained" : _closedFor ?? "closed");
        }
    }

    public void Dispose()
    {
        _idle.Dispose();
        _closing.Dispose();
    }

    private void DropSlowClient(string limit)
    {
        if (!_finished && !_closing.IsCancellationRequested)
        {
            // The client is not reading: drop the connection; its session cancels its work.
            LogSlowClientDropped(_logger, ClientId, limit);
            _closing.Cancel();
        }
    }

    /// <summary>
    /// Reads message after message. Each takes its place in the connection's <see cref="FrameBudget"/> as it begins: one
    /// over it is read, dropped unparsed and answered <c>rate_limited</c>, and a connection that stays over it is closed.
    /// Once the connection is closing (<see cref="IdleWatch"/>), nothing more is dispatched.
    /// </summary>
    private async Task ReceiveLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                // The message's type is known from its first fragment, and with it the limit that applies.
                var received = await _reader.ReadFirstAsync(cancellationToken);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    return;
                }

                if (!received.EndOfMessage)
                {
                    _idle.MessageBegan();
                }

                var binary = received.MessageType == WebSocketMessageType.Binary;
                var limit = binary ? _options.MaxBinaryBytes : _options.MaxFrameBytes;
                if (!_budget.TryTake(received.Count, out var retryAfter))
                {
                    var id = binary ? null : _reader.PeekId(received.Count, received.EndOfMessage);
                    if (!await AcceptAsync(await _reader.DiscardRestAsync(received, limit, cancellationToken), limit, cancellationToken))
                    {
                        return;
                    }

                    var open = OverBudget(id, retryAfter);
                    _idle.EndDispatch(active: false);
                    if (!open)
                    {
                        // Read on until the client's close: a socket shut with unread bytes is reset, and the client
                        // would never see why.
                        await _reader.DiscardUntilCloseAsync(IdleWatch.CloseHandshake, cancellationToken);
                        return;
                    }

                    continue;
                }

                if (binary)
                {
                    var (frame, end) = await _reader.ReadBinaryAsync(received, cancellationToken);
                    if (!await AcceptAsync(end, limit, cancellationToken))
                    {
                        frame?.Return();
                        return;
                    }

                    try
                    {
                        if (frame is null)
                        {
                            _outbox.Send(FrameWriter.Error(null, new InferError(ErrorCode.PayloadTooLarge, $"a binary frame may be at most {limit} bytes.")));
                        }
                        else
                        {
                            await _requests.HandleBinaryAsync(frame, cancellationToken);
                        }
                    }
                    finally
                    {
                        _idle.EndDispatch(active: true);
                    }

                    continue;
                }

                var (count, textEnd) = await _reader.ReadTextAsync(received, cancellationToken);
                if (!await AcceptAsync(textEnd, limit, cancellationToken))
                {
                    return;
                }

                try
                {
                    if (textEnd == MessageEnd.OverLimit)
                    {
                        _outbox.Send(FrameWriter.Error(null, new InferError(ErrorCode.PayloadTooLarge, $"a frame may be at most {limit} bytes.")));
                    }
                    else
                    {
                        await _requests.HandleAsync(_reader.Text(count), cancellationToken);
                    }
                }
                finally
                {
                    _idle.EndDispatch(active: true);
                }

                _reader.Shrink();
            }
        }
        finally
        {
            _reader.Dispose();
        }
    }

    /// <summary>
    /// A message has been read (or dropped): its bytes were counted as they came. True when it may be acted on, which
    /// then ends with <see cref="IdleWatch.EndDispatch"/>; false when the loop is to end: the client closed, the message
    /// was endless (closed here, 1009), or the connection is closing (read on until the client's close).
    /// </summary>
    private async Task<bool> AcceptAsync(MessageEnd end, int limit, CancellationToken cancellationToken)
    {
        if (end == MessageEnd.Closed)
        {
            return false;
        }

        if (end == MessageEnd.Endless)
        {
            var past = (long)MessageReader.DiscardMultiple * limit;
            LogEndless(_logger, ClientId, past);
            CloseFor(
                "closed for an endless message",
                FrameWriter.Error(null, new InferError(ErrorCode.PayloadTooLarge, $"a message may be at most {limit} bytes; this one went on past {past}: the connection is closed.")),
                WebSocketCloseStatus.MessageTooBig,
                $"message past {past} bytes");
        }
        else if (_idle.TryBeginDispatch())
        {
            return true;
        }

        await _reader.DiscardUntilCloseAsync(IdleWatch.CloseHandshake, cancellationToken);
        return false;
    }

    /// <summary>A message over the budget was read and dropped: answered <c>rate_limited</c> (with the message's
    /// <paramref name="id"/> when it could be seen), or, when the connection keeps passing its budget, the connection is
    /// closed (1008); false then.</summary>
    private bool OverBudget(string? id, TimeSpan retryAfter)
    {
        var budget = $"{_options.MaxFramesPerSecond} messages and {_options.MaxBytesPerSecond} bytes a second";
        if (!_budget.Exhausted)
        {
            var ms = (int)Math.Ceiling(retryAfter.TotalMilliseconds);
            _outbox.Send(FrameWriter.Error(id, new InferError(ErrorCode.RateLimited, $"this connection sends more than its {budget}: the message was dropped unread; retry in {ms} ms.", ms)));
            return true;
        }

        LogOverBudget(_logger, ClientId, _options.OverBudgetCloseAfter.TotalSeconds);
        CloseFor(
            "closed over its budget",
            FrameWriter.Error(id, new InferError(ErrorCode.RateLimited, $"this connection sent more than its {budget} for {_options.OverBudgetCloseAfter.TotalSeconds:0.#} s: it is closed.")),
            WebSocketCloseStatus.PolicyViolation,
            "over the frame budget");
        return false;
    }

    /// <summary>Closes the connection from the receive loop: a last error, then the close after what is queued.</summary>
    private void CloseFor(string why, byte[] lastWord, WebSocketCloseStatus status, string reason)
    {
        _closedFor = why;
        _outbox.Send(lastWord);
        if (!_outbox.TryClose(status, reason))
        {
            Abort();
        }
    }

    /// <summary>Idle for <see cref="FrontendOptions.IdleTimeout"/>, or a message unfinished past
    /// <see cref="FrontendOptions.MessageReceiveTimeout"/>: the close goes out after what is queued.</summary>
    private bool CloseUnused(WebSocketCloseStatus status, string reason)
    {
        if (status == WebSocketCloseStatus.NormalClosure)
        {
            _closedFor = "closed idle";
            LogIdle(_logger, ClientId, _options.IdleTimeout.TotalSeconds);
        }
        else
        {
            _closedFor = "closed for a message not completed in time";
            LogSlowMessage(_logger, ClientId, _options.MessageReceiveTimeout.TotalSeconds);
        }

        return _outbox.TryClose(status, reason);
    }

    private async Task SendLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var message in _outbox.ReadAllAsync(cancellationToken))
            {
                if (message.Type == WebSocketMessageType.Close)
                {
                    // The client answers with its own close frame, which ends the receive loop.
                    await _socket.CloseOutputAsync(message.CloseStatus, message.CloseReason, cancellationToken);
                    return;
                }

                await _socket.SendAsync(message.Frame, message.Type, endOfMessage: true, cancellationToken);
                _outbox.Sent(message);
                if (message.ProducedAt != default)
                {
                    _metrics.Delivered(GridMetrics.WebSocketPath, (_time.GetUtcNow() - message.ProducedAt).TotalSeconds);
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
            _closing.Cancel();
        }
    }

    private async Task CloseSocketAsync()
    {
        try
        {
            if (_closing.IsCancellationRequested)
            {
                _socket.Abort();
            }
            else if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, timeout.Token);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
            _socket.Abort();
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client {ClientId} connected")]
    private static partial void LogOpened(ILogger logger, string clientId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Client {ClientId} {How} after {Seconds:F1} s and {Requests} requests")]
    private static partial void LogClosed(ILogger logger, string clientId, double seconds, long requests, string how);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId} closed: over its frame budget for {Seconds} s")]
    private static partial void LogOverBudget(ILogger logger, string clientId, double seconds);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client {ClientId} closed: idle for {Seconds} s")]
    private static partial void LogIdle(ILogger logger, string clientId, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId} closed: a message not completed in {Seconds} s")]
    private static partial void LogSlowMessage(ILogger logger, string clientId, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId} closed: a message dropped for its size went on past {Bytes} bytes")]
    private static partial void LogEndless(ILogger logger, string clientId, long bytes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId} dropped: its send queue holds {Limit} unread")]
    private static partial void LogSlowClientDropped(ILogger logger, string clientId, string limit);
}
