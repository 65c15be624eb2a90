using System.Buffers;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Threading.Channels;
using StreamInfer.Frontend.Routing;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Grains.Metrics;
using StreamInfer.Grains.Options;
using StreamInfer.Grains.Sessions;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>
/// One WebSocket client: reads frames, admits requests through the client's session grain, and writes every answer
/// through one bounded send queue. Each request id in <see cref="_pending"/> gets exactly one terminal frame: whoever
/// removes it first (the delivery, a refusal, a cancel, the watchdog) writes it.
/// <para>
/// In the grid a request is known by a per-admission id, <c>{client id}#{sequence}</c>, so that an answer that
/// arrives late for an earlier use of the same client id can never end a later request that reuses it.
/// </para>
/// </summary>
internal sealed partial class ClientConnection : IDeliverySink, IDisposable
{
    private readonly WebSocket _socket;
    private readonly IClientSessionGrain _session;
    private readonly DeliveryRouter _router;
    private readonly FrontendOptions _options;
    private readonly ClientSessionOptions _sessionOptions;
    private readonly FrontendIdentity _identity;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Channel<Outgoing> _outbox;
    private readonly ConcurrentDictionary<string, PendingRequest> _pending = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _submitGate;
    private readonly CancellationTokenSource _closing = new();
    private readonly SlowConsumerMark _sendQueueMark;
    private volatile bool _finished;
    private volatile bool _draining;
    private long _sequence;

    // Requests accepted and not yet ended; a request counts until its terminal frame is queued (after it leaves
    // _pending), so that a drain never closes the socket between the two.
    private int _inFlight;

    // Queued after a drain's last frame: the send loop closes the socket with 1001 when it reaches it.
    private static readonly byte[] GoingAway = new byte[1];

    public ClientConnection(
        WebSocket socket,
        string clientId,
        IClusterClient client,
        DeliveryRouter router,
        FrontendIdentity identity,
        FrontendOptions options,
        ClientSessionOptions sessionOptions,
        TimeProvider time,
        ILogger logger)
    {
        _socket = socket;
        ClientId = clientId;
        _session = client.GetGrain<IClientSessionGrain>(clientId);
        _router = router;
        _options = options;
        _sessionOptions = sessionOptions;
        _identity = identity;
        _time = time;
        _logger = logger;
        _outbox = Channel.CreateBounded<Outgoing>(new BoundedChannelOptions(options.SendQueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _submitGate = new SemaphoreSlim(options.MaxConcurrentSubmits, options.MaxConcurrentSubmits);
        _sendQueueMark = new SlowConsumerMark(options.SendQueueCapacity);
    }

    public string ClientId { get; }

    /// <summary>Requests of this connection not yet ended.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>The frontend is shutting down: warn the client; from now on its new requests are refused.</summary>
    public void BeginDrain(long drainMs)
    {
        _draining = true;
        Send(FrameWriter.Draining(drainMs, $"this frontend is shutting down: requests in flight finish (within {drainMs} ms), new ones are refused; then the connection closes. Reconnect, to another frontend."));
    }

    /// <summary>After the drain: close the socket (1001) once the frames already queued are sent.</summary>
    public void CloseGoingAway()
    {
        if (!_outbox.Writer.TryWrite(new Outgoing(GoingAway, default)))
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
        _router.Register(ClientId, this);
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
            _router.Unregister(ClientId);
            _pending.Clear();
            Interlocked.Exchange(ref _inFlight, 0);
            try
            {
                await _session.CloseAsync();
            }
            catch (Exception ex)
            {
                LogCloseFailed(_logger, ex, ClientId);
            }

            _finished = true;
            _outbox.Writer.TryComplete();
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
            LogClosed(_logger, ClientId, _time.GetElapsedTime(openedAt).TotalSeconds, Interlocked.Read(ref _sequence), _closing.IsCancellationRequested ? "dropped" : _draining ? "drained" : "closed");
        }
    }

    // The submit gate is not disposed: submits still in flight release it after the connection ends, and a
    // SemaphoreSlim without a wait handle holds nothing that needs disposing.
    public void Dispose() => _closing.Dispose();

    public void Deliver(Delivery delivery, DateTimeOffset producedAt)
    {
        var gridId = delivery.RequestId;
        var hash = gridId.LastIndexOf('#');
        if (hash < 0)
        {
            return;
        }

        var id = gridId[..hash];
        if (!_pending.TryGetValue(id, out var pending) || pending.GridId != gridId)
        {
            return;
        }

        if (delivery.Token is { } token)
        {
            lock (pending)
            {
                // Under the request's lock: a token is never written after its request's end.
                // A token at an index already handed on is a retried delivery's duplicate (D9).
                if (_pending.TryGetValue(id, out var current) && current == pending && token.Index >= pending.NextIndex)
                {
                    pending.NextIndex = token.Index + 1;
                    pending.Tokens++;
                    if (pending.Stream)
                    {
                        Send(FrameWriter.Token(id, token), producedAt);
                    }
                    else
                    {
                        pending.Text.Append(token.Text);
                    }
                }
            }
        }

        if (!delivery.IsEnd)
        {
            return;
        }

        // Built under the request's lock (TryEnd): a non-streamed text is read there by a cancel as well.
        TryEnd(
            id,
            pending,
            () => delivery switch
            {
                { Result: { } result } => FrameWriter.Result(id, result),
                { Done: { } done } => FrameWriter.Done(id, done.FinishReason, done.PromptTokens, done.CompletionTokens, done.ModelVersion, pending.Stream ? done.Text : pending.Text.Append(done.Text).ToString(), done),
                _ => FrameWriter.Error(id, delivery.Error!),
            },
            producedAt);
    }

    public void ExpireOverdue(long nowTimestamp)
    {
        foreach (var (id, pending) in _pending)
        {
            if (pending.WatchdogAt <= nowTimestamp && TryEnd(id, pending, FrameWriter.Error(id, new InferError(ErrorCode.DeadlineExceeded, "no answer arrived within the request's deadline."))))
            {
                _ = CancelQuietlyAsync(pending);
            }
        }
    }

    public void FailSilo(string silo, InferError error)
    {
        foreach (var (id, pending) in _pending)
        {
            if ((pending.Silo is null || pending.Silo == silo) && TryEnd(id, pending, FrameWriter.Error(id, error)))
            {
                _ = CancelQuietlyAsync(pending);
            }
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
                    Send(FrameWriter.Error(null, new InferError(ErrorCode.PayloadTooLarge, $"a frame may be at most {_options.MaxFrameBytes} bytes.")));
                }
                else if (received.MessageType == WebSocketMessageType.Binary)
                {
                    Send(FrameWriter.Error(null, new InferError(ErrorCode.BadRequest, "binary frames are not supported; send JSON text frames.")));
                }
                else
                {
                    await HandleFrameAsync(buffer.AsMemory(0, count), cancellationToken);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task HandleFrameAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        ClientFrame parsed;
        try
        {
            parsed = RequestParser.Parse(frame);
        }
        catch (Exception ex)
        {
            // The parser answers bad input itself; this is the backstop that keeps one frame from closing the connection.
            LogParseFailed(_logger, ex, ClientId);
            Send(FrameWriter.Error(null, new InferError(ErrorCode.BadRequest, "the frame could not be read.")));
            return;
        }

        switch (parsed)
        {
            case ClientFrame.Invalid invalid:
                Send(FrameWriter.Error(invalid.Id, new InferError(invalid.Code, invalid.Message)));
                break;

            case ClientFrame.Cancel cancel:
                if (!_pending.TryGetValue(cancel.Id, out var toCancel))
                {
                    Send(FrameWriter.Error(cancel.Id, new InferError(ErrorCode.BadRequest, $"no request with id '{cancel.Id}' is in flight.")));
                }
                else if (Interlocked.Exchange(ref toCancel.Cancelling, 1) == 0)
                {
                    // Repeated cancels of one request cost nothing: its single cancelled frame is on its way.
                    _ = CancelAsync(cancel.Id, toCancel);
                }

                break;

            case ClientFrame.Infer infer when _draining:
                Send(FrameWriter.Error(infer.Id, new InferError(ErrorCode.ModelUnavailable, "this frontend is shutting down; send it again on a connection to another frontend.", 1000)));
                break;

            case ClientFrame.Infer infer:
                // Until the admission says which deadline applied (the model's default may differ from the session's),
                // the watchdog allows the longest there is.
                var timeout = infer.Timeout ?? _sessionOptions.MaxTimeout;
                timeout = timeout < _sessionOptions.MaxTimeout ? timeout : _sessionOptions.MaxTimeout;
                var submittedAt = _time.GetTimestamp();
                var pending = new PendingRequest($"{infer.Id}#{Interlocked.Increment(ref _sequence)}", WatchdogAt(submittedAt, timeout), submittedAt)
                {
                    IsText = infer.Prompt is not null,
                    Stream = infer.Stream,
                };
                Interlocked.Increment(ref _inFlight);
                if (!_pending.TryAdd(infer.Id, pending))
                {
                    Interlocked.Decrement(ref _inFlight);
                    Send(FrameWriter.Error(infer.Id, new InferError(ErrorCode.BadRequest, $"a request with id '{infer.Id}' is already in flight on this connection.")));
                    break;
                }

                await _submitGate.WaitAsync(cancellationToken);
                _ = SubmitAsync(infer.Id, pending, new InferRequest(pending.GridId, infer.Model, infer.Inputs, infer.Prompt, infer.Timeout, _identity.Id, infer.Priority, infer.Generation, _identity.Observer));
                break;
        }
    }

    private async Task SubmitAsync(string id, PendingRequest pending, InferRequest request)
    {
        try
        {
            var admission = await _session.SubmitAsync(request);
            if (admission.Timeout is { } applied)
            {
                pending.WatchdogAt = WatchdogAt(pending.SubmittedAt, applied);
            }

            pending.Silo = admission.Silo;
            if (admission.Warning is { } warning)
            {
                Send(FrameWriter.Warning(warning.Backlog, warning.Capacity, $"{warning.Backlog} of {warning.Capacity} backlog slots are in use; read results faster or send less."));
            }

            if (admission.Error is { } error)
            {
                TryEnd(id, pending, FrameWriter.Error(id, error));
            }
            else if (Volatile.Read(ref pending.Cancelling) == 1)
            {
                // The client's cancel may have reached the session before this submit did (both are sent without
                // waiting), found nothing to cancel, and ended the request here: cancel again now that it is admitted.
                _ = CancelQuietlyAsync(pending);
            }
        }
        catch (Exception ex)
        {
            LogSubmitFailed(_logger, ex, ClientId, id);
            if (TryEnd(id, pending, FrameWriter.Error(id, AdmissionFailure.From(ex))))
            {
                // The session may have admitted it before the failure reached us: release it there too.
                _ = CancelQuietlyAsync(pending);
            }
        }
        finally
        {
            _submitGate.Release();
        }
    }

    private async Task CancelAsync(string id, PendingRequest pending)
    {
        await CancelQuietlyAsync(pending);
        // A text request ends as generations do, with what it produced so far; others with a cancelled error.
        TryEnd(id, pending, () => pending.IsText
            ? FrameWriter.Done(id, FinishReasons.Cancelled, 0, pending.Tokens, null, pending.Stream ? string.Empty : pending.Text.ToString(), null)
            : FrameWriter.Error(id, new InferError(ErrorCode.Cancelled, "cancelled by the client.")));
    }

    /// <summary>Ends a request with <paramref name="frame"/> if nothing else has ended it; false if something had.</summary>
    private bool TryEnd(string id, PendingRequest pending, byte[] frame) => TryEnd(id, pending, () => frame);

    private bool TryEnd(string id, PendingRequest pending, Func<byte[]> frame, DateTimeOffset producedAt = default)
    {
        lock (pending)
        {
            if (!_pending.TryRemove(KeyValuePair.Create(id, pending)))
            {
                return false;
            }

            byte[] bytes;
            try
            {
                bytes = frame();
            }
            catch (Exception ex)
            {
                // An output the protocol cannot carry must still end the request, not leave the client waiting.
                LogWriteFailed(_logger, ex, ClientId, id);
                bytes = FrameWriter.Error(id, new InferError(ErrorCode.Internal, "the result could not be encoded as JSON."));
            }

            Send(bytes, producedAt);
            Interlocked.Decrement(ref _inFlight);
            return true;
        }
    }

    private async Task CancelQuietlyAsync(PendingRequest pending)
    {
        try
        {
            await _session.CancelAsync(pending.GridId);
        }
        catch (Exception ex)
        {
            LogCancelFailed(_logger, ex, ClientId, pending.GridId);
        }
    }

    /// <summary>Queues a frame for the send loop; <paramref name="producedAt"/>, when set, is when the grid produced what
    /// it carries, for the return path's latency metric.</summary>
    private void Send(byte[] frame, DateTimeOffset producedAt = default)
    {
        if (_outbox.Writer.TryWrite(new Outgoing(frame, producedAt)))
        {
            var queued = _outbox.Reader.Count;
            if (_sendQueueMark.Observe(queued))
            {
                // Warned once per crossing of 80%; the queue's last 20% leaves room for this frame.
                _outbox.Writer.TryWrite(new Outgoing(
                    FrameWriter.Warning(
                        queued,
                        _options.SendQueueCapacity,
                        $"{queued} of {_options.SendQueueCapacity} frames wait for this client to read them; at {_options.SendQueueCapacity} the connection is closed."),
                    default));
            }

            return;
        }

        if (!_finished && !_closing.IsCancellationRequested)
        {
            // The client is not reading: keeping its frames would grow memory without bound. Drop the connection; its
            // session cancels its work.
            LogSlowClientDropped(_logger, ClientId, _options.SendQueueCapacity);
            _closing.Cancel();
        }
    }

    private async Task SendLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var (frame, producedAt) in _outbox.Reader.ReadAllAsync(cancellationToken))
            {
                if (ReferenceEquals(frame, GoingAway))
                {
                    // The client answers with its own close frame, which ends the receive loop.
                    await _socket.CloseOutputAsync(WebSocketCloseStatus.EndpointUnavailable, "server shutting down", cancellationToken);
                    return;
                }

                await _socket.SendAsync(frame, WebSocketMessageType.Text, endOfMessage: true, cancellationToken);
                if (producedAt != default)
                {
                    GridMetrics.Delivered(GridMetrics.WebSocketPath, (_time.GetUtcNow() - producedAt).TotalSeconds);
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

    [LoggerMessage(Level = LogLevel.Error, Message = "Client {ClientId}: the answer to {RequestId} could not be written")]
    private static partial void LogWriteFailed(ILogger logger, Exception ex, string clientId, string requestId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Client {ClientId}: a frame could not be parsed")]
    private static partial void LogParseFailed(ILogger logger, Exception ex, string clientId);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client {ClientId} connected")]
    private static partial void LogOpened(ILogger logger, string clientId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Client {ClientId} {How} after {Seconds:F1} s and {Requests} requests")]
    private static partial void LogClosed(ILogger logger, string clientId, double seconds, long requests, string how);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Closing the session of client {ClientId} failed")]
    private static partial void LogCloseFailed(ILogger logger, Exception ex, string clientId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId}: submitting request {RequestId} failed")]
    private static partial void LogSubmitFailed(ILogger logger, Exception ex, string clientId, string requestId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId}: cancelling request {RequestId} failed")]
    private static partial void LogCancelFailed(ILogger logger, Exception ex, string clientId, string requestId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId} dropped: {Capacity} frames queued unread")]
    private static partial void LogSlowClientDropped(ILogger logger, string clientId, int capacity);

    /// <summary>A request in flight: its per-admission id in the grid, when the watchdog ends it, whether a cancel is under way.</summary>
    private long WatchdogAt(long from, TimeSpan timeout) => from + (long)((timeout + _options.WatchdogGrace).TotalSeconds * _time.TimestampFrequency);

    private sealed class PendingRequest(string gridId, long watchdogAt, long submittedAt)
    {
        private long _watchdogAt = watchdogAt;

        public string GridId { get; } = gridId;

        public long SubmittedAt { get; } = submittedAt;

        /// <summary>Set once more when the admission names the deadline applied; read by the router's sweep.</summary>
        public long WatchdogAt
        {
            get => Volatile.Read(ref _watchdogAt);
            set => Volatile.Write(ref _watchdogAt, value);
        }

        public int Cancelling;

        /// <summary>The silo whose batcher holds the request, once admitted (see <see cref="FailSilo"/>).</summary>
        public volatile string? Silo;

        /// <summary>A text (prompt) request: it ends with <c>done</c>, a cancelled one too.</summary>
        public bool IsText { get; init; }

        /// <summary>Whether tokens are written as they come; otherwise they are gathered in <see cref="Text"/>.</summary>
        public bool Stream { get; init; } = true;

        /// <summary>Tokens received (under the request's lock).</summary>
        public int Tokens { get; set; }

        /// <summary>The index of the next token to hand on (under the request's lock).</summary>
        public int NextIndex { get; set; }

        /// <summary>The text of a request that does not stream (under the request's lock).</summary>
        public System.Text.StringBuilder Text => _text ??= new();

        private System.Text.StringBuilder? _text;
    }

    /// <summary>A frame in the send queue, with when the grid produced its content (default: not a delivery).</summary>
    private readonly record struct Outgoing(byte[] Frame, DateTimeOffset ProducedAt);
}
