using System.Collections.Concurrent;
using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Requests;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>
/// The requests of one WebSocket client: each frame goes through the parser to the shared request lifecycle, and each
/// request's tokens and end come back as frames through the connection's <see cref="FrameOutbox"/>. A request id is in
/// flight at most once per connection; in the grid it is known by a per-admission id, <c>{id}#{sequence}</c>, so that
/// an answer that arrives late for an earlier use of the same id can never end a later request that reuses it (in an API
/// key's session, shared by the key's connections, <c>{id}#{sequence}@{connection}</c>). A request
/// that came in a binary frame keeps that frame's buffer (its tensors are slices of it) and the frame's share of the
/// connection's <see cref="ByteBudget"/> until it ends, and by default gets its result as a binary message;
/// <c>binary_outputs</c> chooses either way. Requests are admitted concurrently, except a stateful sequence's, which are
/// admitted one after another in the order they came (<see cref="SequenceTurns"/>).
/// </summary>
internal sealed partial class ClientRequests(
    ClientIdentity client, string clientId, RequestSubmitter submitter, FrameOutbox outbox, SemaphoreSlim submitGate, ByteBudget payloadBudget, int maxHeaderBytes, ILogger logger)
    : IRequestListener
{
    private readonly ConcurrentDictionary<string, InFlightRequest> _pending = new(StringComparer.Ordinal);
    private readonly SequenceTurns _turns = new();
    private readonly string _gridSuffix = client.Keyed ? $"@{Guid.NewGuid():N}" : string.Empty;

    private long _sequence;
    private int _ending;
    private volatile bool _draining;

    /// <summary>Requests the client has sent.</summary>
    public long Sent => Interlocked.Read(ref _sequence);

    /// <summary>Whether a request of the client has not ended yet, or its end is not queued yet. Reads the pending
    /// requests before the ends being written: an end counts itself before it leaves them.</summary>
    public bool Busy => !_pending.IsEmpty || Volatile.Read(ref _ending) > 0;

    /// <summary>From now on new requests are refused: the frontend is shutting down.</summary>
    public void BeginDrain() => _draining = true;

    /// <summary>Handles one text frame from the client.</summary>
    public async Task HandleAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        if (Parse(frame, static f => RequestParser.Parse(f)) is { } parsed)
        {
            await DispatchAsync(parsed, null, cancellationToken);
        }
    }

    /// <summary>
    /// Handles one binary message from the client, read into <paramref name="frame"/>: first takes its bytes from the
    /// connection's budget, waiting while they do not fit (the caller reads no further message meanwhile). A request
    /// made of it keeps the frame and its bytes until it ends; anything else gives both back at once.
    /// </summary>
    public async Task HandleBinaryAsync(RentedBytes frame, CancellationToken cancellationToken)
    {
        try
        {
            await payloadBudget.TakeAsync(frame.Length, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            frame.Return();
            throw;
        }

        // Not in a finally: a request that took the buffer decides itself when it may go back.
        if (Parse(frame.Memory, f => RequestParser.ParseBinary(f, maxHeaderBytes)) is not { } parsed || !await DispatchAsync(parsed, frame, cancellationToken))
        {
            Release(frame, toPool: true);
        }
    }

    /// <summary>A binary frame is no longer read by its request: its bytes go back to the budget, its array to the pool
    /// when <paramref name="toPool"/>, else to the collector.</summary>
    private void Release(RentedBytes frame, bool toPool)
    {
        payloadBudget.Release(frame.Length);
        if (toPool)
        {
            frame.Return();
        }
        else
        {
            frame.Abandon();
        }
    }

    private ClientFrame? Parse(ReadOnlyMemory<byte> frame, Func<ReadOnlyMemory<byte>, ClientFrame> parse)
    {
        try
        {
            return parse(frame);
        }
        catch (Exception ex)
        {
            // The parser answers bad input itself; this is the backstop that keeps one frame from closing the connection.
            LogParseFailed(logger, ex, clientId);
            outbox.Send(FrameWriter.Error(null, new InferError(ErrorCode.BadRequest, "the frame could not be read.")));
            return null;
        }
    }

    /// <summary>Acts on a parsed frame; true when a request was made of it, which then holds <paramref name="binaryFrame"/>.</summary>
    private async Task<bool> DispatchAsync(ClientFrame parsed, RentedBytes? binaryFrame, CancellationToken cancellationToken)
    {
        switch (parsed)
        {
            case ClientFrame.Invalid invalid:
                outbox.Send(FrameWriter.Error(invalid.Id, new InferError(invalid.Code, invalid.Message)));
                break;

            case ClientFrame.Cancel cancel when _pending.TryGetValue(cancel.Id, out var request):
                _ = submitter.CancelAsync(request, RequestOutcome.CancelledByClient);
                break;

            case ClientFrame.Cancel cancel:
                outbox.Send(FrameWriter.Error(cancel.Id, new InferError(ErrorCode.BadRequest, $"no request with id '{cancel.Id}' is in flight.")));
                break;

            case ClientFrame.Infer infer when _draining:
                outbox.Send(FrameWriter.Error(infer.Id, new InferError(ErrorCode.ModelUnavailable, "this frontend is shutting down; send it again on a connection to another frontend.", 1000)));
                break;

            case ClientFrame.Infer infer when _pending.ContainsKey(infer.Id):
                outbox.Send(FrameWriter.Error(infer.Id, new InferError(ErrorCode.BadRequest, $"a request with id '{infer.Id}' is already in flight on this connection.")));
                break;

            case ClientFrame.Infer infer:
                await SubmitAsync(infer, binaryFrame, cancellationToken);
                return true;
        }

        return false;
    }

    /// <summary>The connection ended: its requests end unanswered (its session cancels their work; a key's session,
    /// which outlives the connection, is told to cancel each).</summary>
    public void Close()
    {
        foreach (var (_, request) in _pending)
        {
            if (client.Keyed)
            {
                submitter.Abandon(request);
            }
            else
            {
                request.TryEnd(RequestOutcome.Gone);
            }
        }
    }

    private async Task SubmitAsync(ClientFrame.Infer infer, RentedBytes? binaryFrame, CancellationToken cancellationToken)
    {
        // A connection keeps its client's order: a sequence's requests wait in order for the one before them.
        infer = SequenceFields.Ordered(infer);
        var binaryResult = infer.BinaryOutputs ?? binaryFrame is not null;
        IRequestListener listener = binaryFrame is null && !binaryResult ? this : new BinaryRequest(this, binaryFrame, binaryResult);

        // Only this loop adds, so the id checked free above is still free; an end may remove it at any time.
        var request = submitter.Begin(clientId, $"{infer.Id}#{Interlocked.Increment(ref _sequence)}{_gridSuffix}", infer.Id, infer, infer.Stream, listener);
        _pending[infer.Id] = request;
        if (request.IsEnded)
        {
            _pending.TryRemove(KeyValuePair.Create(infer.Id, request));
            return;
        }

        var turn = _turns.Take(infer.Sequence?.Id);
        try
        {
            await submitGate.WaitAsync(cancellationToken);
        }
        catch
        {
            turn?.Done();
            throw;
        }

        _ = AdmitAsync(request, infer, turn);
    }

    private async Task AdmitAsync(InFlightRequest request, ClientFrame.Infer infer, SequenceTurns.Turn? turn)
    {
        try
        {
            if (turn is not null)
            {
                await turn.Previous;
            }

            await submitter.SubmitAsync(request, infer, client);
        }
        finally
        {
            turn?.Done();
            submitGate.Release();
        }
    }

    void IRequestListener.OnWarning(InFlightRequest request, BacklogWarning warning)
        => outbox.Send(FrameWriter.Warning(warning.Backlog, warning.Capacity, "requests", $"{warning.Backlog} of {warning.Capacity} backlog slots are in use; read results faster or send less."));

    void IRequestListener.OnToken(InFlightRequest request, GeneratedToken token, DateTimeOffset producedAt)
        => outbox.Send(FrameWriter.Token(request.Id, token), producedAt);

    void IRequestListener.OnEnd(InFlightRequest request, RequestOutcome outcome, DateTimeOffset producedAt)
        => End(request, outcome, producedAt, binaryResult: false);

    /// <summary>Writes the request's end: a <c>result</c> as a binary message when <paramref name="binaryResult"/>,
    /// every other end as a text frame.</summary>
    private void End(InFlightRequest request, RequestOutcome outcome, DateTimeOffset producedAt, bool binaryResult)
    {
        // Busy until the answer is queued: an idle close decided in between would go out before it.
        Interlocked.Increment(ref _ending);
        try
        {
            _pending.TryRemove(KeyValuePair.Create(request.Id, request));
            if (!outcome.Abandoned)
            {
                WriteEnd(request, outcome, producedAt, binaryResult);
            }
        }
        finally
        {
            Interlocked.Decrement(ref _ending);
        }
    }

    private void WriteEnd(InFlightRequest request, RequestOutcome outcome, DateTimeOffset producedAt, bool binaryResult)
    {

        byte[]? frame = null;
        RentedBytes? binary = null;
        try
        {
            if (binaryResult && outcome.Result is { } result)
            {
                binary = FrameWriter.BinaryResult(request.Id, result);
            }
            else
            {
                frame = EndFrame(request, outcome);
            }
        }
        catch (Exception ex)
        {
            // An output the protocol cannot carry must still end the request, not leave the client waiting.
            LogWriteFailed(logger, ex, clientId, request.Id);
            frame = FrameWriter.Error(request.Id, new InferError(ErrorCode.Internal, binaryResult ? "the result could not be encoded as a binary frame." : "the result could not be encoded as JSON."));
        }

        if (outcome.Result?.Window is { Event: not null } window)
        {
            // Before its result: a client reacting to the event need not look into every result.
            outbox.Send(FrameWriter.Event(request.Id, request.Sequence, window));
        }

        if (binary is not null)
        {
            outbox.SendBinary(binary, producedAt);
        }
        else
        {
            outbox.Send(frame!, producedAt);
        }
    }

    /// <summary>The end's frame. A cancelled text request ends as generations do, with what it produced so far; other
    /// cancelled requests with a <c>cancelled</c> error.</summary>
    private static byte[] EndFrame(InFlightRequest request, RequestOutcome outcome) => outcome switch
    {
        { Result: { } result } => FrameWriter.Result(request.Id, result),
        { Done: { } done } => FrameWriter.Done(request.Id, done.FinishReason, done.PromptTokens, done.CompletionTokens, done.ModelVersion, done.Text, done),
        { Cancelled: true } when request.IsText => FrameWriter.Done(request.Id, FinishReasons.Cancelled, 0, request.Tokens, null, request.GatheredText, null),
        { Cancelled: true } => FrameWriter.Error(request.Id, new InferError(ErrorCode.Cancelled, "cancelled by the client.")),
        _ => FrameWriter.Error(request.Id, outcome.Error!),
    };

    /// <summary>
    /// The listener of a request that came in a binary frame or asked for a binary result. The frame's buffer goes back
    /// to the pool once the grid has answered and the answer is written (an echo's outputs may be slices of it); a
    /// request ended any other way may still be read by a batch, so its buffer is left to the collector.
    /// </summary>
    private sealed class BinaryRequest(ClientRequests owner, RentedBytes? frame, bool binaryResult) : IRequestListener
    {
        public void OnWarning(InFlightRequest request, BacklogWarning warning) => ((IRequestListener)owner).OnWarning(request, warning);

        public void OnToken(InFlightRequest request, GeneratedToken token, DateTimeOffset producedAt) => ((IRequestListener)owner).OnToken(request, token, producedAt);

        public void OnEnd(InFlightRequest request, RequestOutcome outcome, DateTimeOffset producedAt)
        {
            try
            {
                owner.End(request, outcome, producedAt, binaryResult);
            }
            finally
            {
                if (frame is not null)
                {
                    owner.Release(frame, toPool: outcome.FromGrid);
                }
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Client {ClientId}: the answer to {RequestId} could not be written")]
    private static partial void LogWriteFailed(ILogger logger, Exception ex, string clientId, string requestId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Client {ClientId}: a frame could not be parsed")]
    private static partial void LogParseFailed(ILogger logger, Exception ex, string clientId);
}
