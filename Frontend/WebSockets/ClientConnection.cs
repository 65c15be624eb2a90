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
}
