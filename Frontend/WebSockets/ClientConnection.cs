using System.Buffers;
using System.Buffers.Binary;
using System.Net.WebSockets;
using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Requests;
using StreamInfer.Grains.Metrics;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>
/// One WebSocket client's transport: the receive loop hands each message to the client's <see cref="ClientRequests"/>
/// (a text frame up to <see cref="FrontendOptions.MaxFrameBytes"/>, read into a buffer reused from message to message;
/// a binary one up to <see cref="FrontendOptions.MaxBinaryBytes"/>, read into a pooled buffer of its own, sized from its
/// header, that its request keeps, and whose bytes are taken from the connection's
/// <see cref="FrontendOptions.MaxInFlightBytes"/> before the next message is read); the send loop writes everything queued in its <see cref="FrameOutbox"/>. A client that stops reading
/// is dropped; at the end its session is closed, which cancels its work in the grid (an API key's session, shared with
/// the key's other connections, stays: only this connection's requests are cancelled there).
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
    }

    public string ClientId { get; }

    /// <summary>Whether the connection still serves (its end has not begun).</summary>
    public bool IsOpen => !_finished;

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
            LogClosed(_logger, ClientId, _time.GetElapsedTime(openedAt).TotalSeconds, _requests.Sent, _closing.IsCancellationRequested ? "dropped" : _draining ? "drained" : "closed");
        }
    }

    public void Dispose() => _closing.Dispose();

    private void DropSlowClient(string limit)
    {
        if (!_finished && !_closing.IsCancellationRequested)
        {
            // The client is not reading: drop the connection; its session cancels its work.
            LogSlowClientDropped(_logger, ClientId, limit);
            _closing.Cancel();
        }
    }

    private async Task ReceiveLoopAsync(CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            while (true)
            {
                // The message's type is known from its first fragment, and with it the limit that applies.
                var received = await _socket.ReceiveAsync(buffer.AsMemory(), cancellationToken);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    return;
                }

                if (received.MessageType == WebSocketMessageType.Binary)
                {
                    var (frame, open) = await ReceiveBinaryAsync(buffer, received, cancellationToken);
                    if (!open)
                    {
                        return;
                    }

                    if (frame is null)
                    {
                        _outbox.Send(FrameWriter.Error(null, new InferError(ErrorCode.PayloadTooLarge, $"a binary frame may be at most {_options.MaxBinaryBytes} bytes.")));
                    }
                    else
                    {
                        await _requests.HandleBinaryAsync(frame, cancellationToken);
                    }

                    continue;
                }

                var count = received.Count;
                var tooLarge = count > _options.MaxFrameBytes;
                while (!received.EndOfMessage)
                {
                    if (tooLarge)
                    {
                        // Drain the rest of an oversized message without keeping it.
                        count = 0;
                    }
                    else if (count == buffer.Length)
                    {
                        // Grow up to one byte past the limit, so that "over the limit" is observable.
                        var grown = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, _options.MaxFrameBytes + 1));
                        buffer.AsSpan(0, count).CopyTo(grown);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = grown;
                    }

                    received = await _socket.ReceiveAsync(buffer.AsMemory(count), cancellationToken);
                    if (received.MessageType == WebSocketMessageType.Close)
                    {
                        return;
                    }

                    count += received.Count;
                    tooLarge |= count > _options.MaxFrameBytes;
                }

                if (tooLarge)
                {
                    _outbox.Send(FrameWriter.Error(null, new InferError(ErrorCode.PayloadTooLarge, $"a frame may be at most {_options.MaxFrameBytes} bytes.")));
                }
                else
                {
                    await _requests.HandleAsync(buffer.AsMemory(0, count), cancellationToken);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Reads the rest of a binary message, whose first fragment is in <paramref name="first"/>'s buffer, into a pooled
    /// buffer of its own. Null when it passes <see cref="FrontendOptions.MaxBinaryBytes"/> (the rest is read and
    /// discarded); <c>Open</c> false when the client closed meanwhile.
    /// </summary>
    private async Task<(RentedBytes? Frame, bool Open)> ReceiveBinaryAsync(byte[] scratch, ValueWebSocketReceiveResult first, CancellationToken cancellationToken)
    {
        var limit = _options.MaxBinaryBytes;
        var received = first;
        if (received.Count > limit)
        {
            return (null, await DiscardRestAsync(scratch, received, cancellationToken));
        }

        var frame = new RentedBytes(received.EndOfMessage ? received.Count : Math.Min(limit, Math.Max(4 * received.Count, 64 * 1024)));
        frame.Write(scratch.AsSpan(0, received.Count));
        var sized = received.EndOfMessage;
        while (!received.EndOfMessage)
        {
            sized = sized || SizeFromHeader(frame, limit);
            if (frame.Length == limit)
            {
                // At the limit and not at the end: past it, unless all that is left is an empty last fragment.
                received = await _socket.ReceiveAsync(scratch.AsMemory(), cancellationToken);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    frame.Return();
                    return (null, false);
                }

                if (received.Count == 0)
                {
                    continue;
                }

                frame.Return();
                return (null, await DiscardRestAsync(scratch, received, cancellationToken));
            }

            var room = frame.GetMemory(1);
            received = await _socket.ReceiveAsync(room[..Math.Min(room.Length, limit - frame.Length)], cancellationToken);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                frame.Return();
                return (null, false);
            }

            frame.Advance(received.Count);
        }

        return (frame, true);
    }

    /// <summary>
    /// Once the header is in, makes room for the payload its ranges declare (up to <paramref name="limit"/>): one resize
    /// while little is read, instead of doubling, and copying, through a large payload. False until the header is in.
    /// </summary>
    private bool SizeFromHeader(RentedBytes frame, int limit)
    {
        var read = frame.Memory.Span;
        if (read.Length < 4)
        {
            return false;
        }

        var headerLength = BinaryPrimitives.ReadUInt32LittleEndian(read);
        if (headerLength > (uint)_options.MaxFrameBytes)
        {
            // Refused once read; not worth a buffer sized from it.
            return true;
        }

        if (read.Length - 4 < headerLength)
        {
            return false;
        }

        var declared = Math.Min(4 + headerLength + RequestParser.DeclaredPayloadBytes(read.Slice(4, (int)headerLength)), limit);
        if (declared > read.Length)
        {
            frame.GetMemory((int)declared - read.Length);
        }

        return true;
    }

    /// <summary>Reads and discards the rest of a message; false when the client closed meanwhile.</summary>
    private async Task<bool> DiscardRestAsync(byte[] scratch, ValueWebSocketReceiveResult received, CancellationToken cancellationToken)
    {
        while (!received.EndOfMessage)
        {
            received = await _socket.ReceiveAsync(scratch.AsMemory(), cancellationToken);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                return false;
            }
        }

        return true;
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
                    await _socket.CloseOutputAsync(WebSocketCloseStatus.EndpointUnavailable, "server shutting down", cancellationToken);
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId} dropped: its send queue holds {Limit} unread")]
    private static partial void LogSlowClientDropped(ILogger logger, string clientId, string limit);
}
