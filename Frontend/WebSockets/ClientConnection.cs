using System.Buffers;
using System.Net.WebSockets;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Requests;
using StreamInfer.Grains.Metrics;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>
/// One WebSocket client's transport: the receive loop hands each text frame to the client's <see cref="ClientRequests"/>;
/// the send loop writes everything queued in its <see cref="FrameOutbox"/>. A client that stops reading is dropped; at
/// the end its session is closed, which cancels its work in the grid.
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
    private volatile bool _finished;
    private volatile bool _draining;

    public ClientConnection(WebSocket socket, string clientId, RequestSubmitter submitter, FrontendOptions options, TimeProvider time, GridMetrics metrics, ILogger logger)
    {
        _socket = socket;
        ClientId = clientId;
        _submitter = submitter;
        _options = options;
        _time = time;
        _metrics = metrics;
        _logger = logger;
        _outbox = new FrameOutbox(options.SendQueueCapacity, DropSlowClient);
        _submitGate = new SemaphoreSlim(options.MaxConcurrentSubmits, options.MaxConcurrentSubmits);
        _requests = new ClientRequests(clientId, submitter, _outbox, _submitGate, logger);
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
            await _submitter.CloseSessionAsync(ClientId);
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

    private void DropSlowClient()
    {
        if (!_finished && !_closing.IsCancellationRequested)
        {
            // The client is not reading: drop the connection; its session cancels its work.
            LogSlowClientDropped(_logger, ClientId, _options.SendQueueCapacity);
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
                var count = 0;
                var tooLarge = false;
                ValueWebSocketReceiveResult received;
                do
                {
                    if (count == buffer.Length)
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
                    if (count > _options.MaxFrameBytes)
                    {
                        // Drain the rest of an oversized message without keeping it.
                        tooLarge = true;
                        count = 0;
                    }
                }
                while (!received.EndOfMessage);

                if (tooLarge)
                {
                    _outbox.Send(FrameWriter.Error(null, new InferError(ErrorCode.PayloadTooLarge, $"a frame may be at most {_options.MaxFrameBytes} bytes.")));
                }
                else if (received.MessageType == WebSocketMessageType.Binary)
                {
                    _outbox.Send(FrameWriter.Error(null, new InferError(ErrorCode.BadRequest, "binary frames are not supported; send JSON text frames.")));
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

    private async Task SendLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var (frame, producedAt) in _outbox.ReadAllAsync(cancellationToken))
            {
                if (FrameOutbox.IsGoingAway(frame))
                {
                    // The client answers with its own close frame, which ends the receive loop.
                    await _socket.CloseOutputAsync(WebSocketCloseStatus.EndpointUnavailable, "server shutting down", cancellationToken);
                    return;
                }

                await _socket.SendAsync(frame, WebSocketMessageType.Text, endOfMessage: true, cancellationToken);
                if (producedAt != default)
                {
                    _metrics.Delivered(GridMetrics.WebSocketPath, (_time.GetUtcNow() - producedAt).TotalSeconds);
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId} dropped: {Capacity} frames queued unread")]
    private static partial void LogSlowClientDropped(ILogger logger, string clientId, int capacity);
}
