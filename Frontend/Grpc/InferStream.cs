using System.Collections.Concurrent;
using System.Threading.Channels;
using Grpc.Core;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Requests;
using StreamInfer.Frontend.WebSockets;

namespace StreamInfer.Frontend.Grpc;

/// <summary>
/// One <c>ModelStreamInfer</c> call: every request read from the stream runs on its own and is answered when it ends,
/// in whatever order they finish, except that a stateful sequence's requests are admitted one after another in the
/// order read (<see cref="SequenceTurns"/>); a decoder's request streams one answer per token, then its final one. A request's
/// failure is answered with <c>error_message</c> and the stream goes on. The requests' payloads held at once are bounded
/// by <see cref="Hosting.FrontendOptions.MaxInFlightBytes"/>: past it the stream is not read until requests end.
/// Answers queue for one writer; past <see cref="Hosting.FrontendOptions.SendQueueBytes"/> unread, the client is not
/// reading and is cut off. Once the client half-closes, the call ends when its last request has been answered; a client
/// that goes away cancels what it still had in flight. The sequences the stream started and did not end end with it.
/// A stream has a WebSocket's limits: messages past <see cref="Hosting.FrontendOptions.MaxFramesPerSecond"/> are
/// answered <c>rate_limited</c> unread, and one that keeps passing it ends <c>RESOURCE_EXHAUSTED</c>; a stream that
/// sends nothing and has nothing in flight for <see cref="Hosting.FrontendOptions.IdleTimeout"/> ends <c>DEADLINE_EXCEEDED</c>.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "Requests still being admitted release the gate after the call ends; a SemaphoreSlim without a wait handle holds nothing to dispose.")]
internal sealed partial class InferStream
{
    private readonly Channel<ModelStreamInferResponse> _answers = Channel.CreateUnbounded<ModelStreamInferResponse>(new UnboundedChannelOptions { SingleReader = true });
    private readonly InferenceService _service;
    private readonly ServerCallContext _context;
    private readonly HttpContext _http;

    private readonly SemaphoreSlim _submitGate;
    private readonly ByteBudget _payloads;
    private readonly FrameBudget _budget;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<HttpCall, byte> _calls = new();
    private readonly SequenceTurns _turns = new();

    // A sequence's answers are written in the order its requests were read: each runs only after the one before it
    // ended, but the ends reach this stream through separate deliveries and continuations that may swap.
    private readonly SequenceTurns _answerTurns = new();

    // The sequences started on this stream and not ended on it: they end with the stream.
    private readonly ConcurrentDictionary<string, byte> _openSequences = new(StringComparer.Ordinal);
    private long _queuedBytes;
    private volatile bool _failed;

    // The reader's own hold plus one per request in flight: the answers end when it reaches zero.
    private int _pending = 1;

    // When a message was last read or a request last ended: the idle timeout counts from it while nothing is in flight.
    private long _lastActive;
    private ITimer? _idleCheck;

    public InferStream(InferenceService service, ServerCallContext context, TimeProvider time)
    {
        _service = service;
        _context = context;
        _time = time;
        _http = context.GetHttpContext();
        _submitGate = new SemaphoreSlim(service.Options.MaxConcurrentSubmits, service.Options.MaxConcurrentSubmits);
        _payloads = new ByteBudget(service.Options.MaxInFlightBytes);
        _budget = new FrameBudget(service.Options, time);
        _lastActive = time.GetTimestamp();
    }

    public async Task RunAsync(IAsyncStreamReader<ModelInferRequest> requests, IServerStreamWriter<ModelStreamInferResponse> responses)
    {
        var writing = WriteAllAsync(responses);
        using var idle = new CancellationTokenSource();
        using var reading = CancellationTokenSource.CreateLinkedTokenSource(_context.CancellationToken, idle.Token);
        var idleTimeout = _service.Options.IdleTimeout;
        if (idleTimeout > TimeSpan.Zero)
        {
            _idleCheck = _time.CreateTimer(_ => CheckIdle(idle, idleTimeout), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _idleCheck.Change(idleTimeout, Timeout.InfiniteTimeSpan);
        }

        try
        {
            while (await ReadAsync(requests, idle, reading.Token))
            {
                var message = requests.Current;
                Volatile.Write(ref _lastActive, _time.GetTimestamp());
                if (!_budget.TryTake(message.CalculateSize(), out var retryAfter))
                {
                    OverBudget(message, retryAfter);
                    continue;
                }

                // A message's bytes stay until its request ends: past the budget, or beyond the admissions allowed at
                // once, stop reading until requests end or are admitted.
                var bytes = GrpcRequest.PayloadBytes(message);
                await _payloads.TakeAsync(bytes, _context.CancellationToken);
                await _submitGate.WaitAsync(_context.CancellationToken);

                Interlocked.Increment(ref _pending);
                var sequenceKey = GrpcRequest.SequenceKey(message);
                _ = RunOneAsync(message, bytes, _turns.Take(sequenceKey), _answerTurns.Take(sequenceKey));
            }
        }
        catch
        {
            // The call fails (a message over the size limit, the client gone): nothing more is answered on it.
            _failed = true;
            foreach (var call in _calls.Keys)
            {
                call.Abandon();
            }

            throw;
        }
        finally
        {
            _idleCheck?.Dispose();
            Finished();
        }

        await writing;
    }

    /// <summary>The next message; a stream idle past its timeout fails the call with <c>DEADLINE_EXCEEDED</c>.</summary>
    private async Task<bool> ReadAsync(IAsyncStreamReader<ModelInferRequest> requests, CancellationTokenSource idle, CancellationToken reading)
    {
        try
        {
            return await requests.MoveNext(reading);
        }
        catch (OperationCanceledException) when (idle.IsCancellationRequested && !_context.CancellationToken.IsCancellationRequested)
        {
            var seconds = _service.Options.IdleTimeout.TotalSeconds;
            LogIdle(_service.Logger, seconds);
            throw GrpcErrors.Exception(new InferError(ErrorCode.DeadlineExceeded, $"the stream sent nothing and had nothing in flight for {seconds:0.###} s (Frontend:IdleTimeout); open a new one."));
        }
    }

    /// <summary>
    /// Runs on the idle timer: ends the read when nothing was read and nothing was in flight for the whole timeout,
    /// otherwise looks again when the timeout would next be reached.
    /// </summary>
    private void CheckIdle(CancellationTokenSource idle, TimeSpan timeout)
    {
        var next = timeout;
        if (Volatile.Read(ref _pending) == 1)
        {
            var quiet = _time.GetElapsedTime(Volatile.Read(ref _lastActive));
            if (quiet >= timeout)
            {
                try
                {
                    idle.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // The stream ended meanwhile.
                }

                return;
            }

            next = timeout - quiet;
        }

        // A request in flight keeps the stream; its end counts as activity, so a full timeout later is never too late.
        try
        {
            _idleCheck?.Change(next, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
            // The stream ended meanwhile.
        }
    }

    /// <summary>A message past the stream's budget is answered <c>rate_limited</c> unparsed; a stream that stays past it ends.</summary>
    private void OverBudget(ModelInferRequest message, TimeSpan retryAfter)
    {
        var retryMs = (int)Math.Clamp(Math.Ceiling(retryAfter.TotalMilliseconds), 1, int.MaxValue);
        var limit = _service.Options.MaxFramesPerSecond;
        if (_budget.Exhausted)
        {
            LogOverBudget(_service.Logger, limit);
            throw GrpcErrors.Exception(new InferError(ErrorCode.RateLimited, $"the stream kept sending past its {limit} messages per second (Frontend:MaxFramesPerSecond) for {_service.Options.OverBudgetCloseAfter.TotalSeconds:0.###} s.", retryMs));
        }

        Send(GrpcErrors.StreamError(message.Id, message.ModelName, new InferError(ErrorCode.RateLimited, $"past this stream's {limit} messages per second (Frontend:MaxFramesPerSecond): not read.", retryMs)));
    }

    /// <summary>The stream is over: the sequences it started and did not end are ended at its caller's session.</summary>
    private Task EndOpenSequencesAsync()
        => _openSequences.IsEmpty
            ? Task.CompletedTask
            : _service.Submitter.EndSequencesAsync(Auth.ClientAuth.Client(_http).Session, [.. _openSequences.Keys]);

    private async Task RunOneAsync(ModelInferRequest message, long payloadBytes, SequenceTurns.Turn? turn, SequenceTurns.Turn? answerTurn)
    {
        var gateHeld = true;
        HttpCall? call = null;
        try
        {
            var (prepared, error) = await _service.PrepareAsync(message, _context);
            if (error is not null)
            {
                Send(GrpcErrors.StreamError(message.Id, message.ModelName, error));
                return;
            }

            var tokens = prepared!.Infer.Prompt is not null ? new TokenAnswers(this, prepared) : null;
            // A stream keeps its client's order: a sequence's requests wait in order for the one before them.
            call = HttpCall.Start(_http, _service.Submitter, SequenceFields.Ordered(prepared.Infer), tokens);
            _calls[call] = 0;
            if (_failed)
            {
                call.Abandon();
            }

            try
            {
                if (turn is not null)
                {
                    await turn.Previous;
                }

                var admitted = await call.AdmitAsync();
                if (prepared.Infer.Sequence is { } sequence)
                {
                    if (sequence.End)
                    {
                        _openSequences.TryRemove(sequence.Id, out _);
                    }
                    else if (sequence.Start && admitted)
                    {
                        _openSequences[sequence.Id] = 0;
                    }
                }
            }
            finally
            {
                turn?.Done();
                gateHeld = false;
                _submitGate.Release();
            }

            var outcome = await call.EndAsync();
            if (outcome.Abandoned)
            {
                return;
            }

            var (response, failure) = GrpcResponses.From(prepared.Request, outcome);
            if (answerTurn is not null)
            {
                await answerTurn.Previous;
            }

            Send(response is not null
                ? new ModelStreamInferResponse { InferResponse = GrpcResponses.Final(response) }
                : GrpcErrors.StreamError(message.Id, message.ModelName, failure!));
        }
        catch (Exception ex)
        {
            LogRequestFailed(_service.Logger, ex, message.Id);
            Send(GrpcErrors.StreamError(message.Id, message.ModelName, new InferError(ErrorCode.Internal, "the request failed inside the frontend.")));
        }
        finally
        {
            turn?.Done();
            answerTurn?.Done();
            if (gateHeld)
            {
                _submitGate.Release();
            }

            if (call is not null)
            {
                _calls.TryRemove(call, out _);
            }

            _payloads.Release(payloadBytes);
            Volatile.Write(ref _lastActive, _time.GetTimestamp());
            Finished();
        }
    }

    /// <summary>Queues an answer for the writer; never blocks (token answers come under their request's lock).</summary>
    private void Send(ModelStreamInferResponse answer)
    {
        var size = answer.CalculateSize();
        var queued = Interlocked.Add(ref _queuedBytes, size);

        // An answer larger than the whole budget still goes when nothing else waits: a client that has read everything
        // is not slow.
        if (queued > _service.Options.SendQueueBytes && queued != size)
        {
            // As a WebSocket client that does not read is dropped: the call is cut and its requests cancelled.
            if (_answers.Writer.TryComplete())
            {
                LogSlowReader(_service.Logger, _service.Options.SendQueueBytes);
                _http.Abort();
            }

            return;
        }

        if (!_answers.Writer.TryWrite(answer))
        {
            Interlocked.Add(ref _queuedBytes, -size);
        }
    }

    private async Task WriteAllAsync(IServerStreamWriter<ModelStreamInferResponse> responses)
    {
        try
        {
            await foreach (var answer in _answers.Reader.ReadAllAsync(_context.CancellationToken))
            {
                await responses.WriteAsync(answer, _context.CancellationToken);
                Interlocked.Add(ref _queuedBytes, -answer.CalculateSize());
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
        {
            // The client went away (or the call ended): what is left is not written.
        }
    }

    private void Finished()
    {
        if (Interlocked.Decrement(ref _pending) == 0)
        {
            _answers.Writer.TryComplete();
            _ = EndOpenSequencesAsync();
        }
    }

    /// <summary>A decoder request's tokens, each queued as an answer of its own as it comes.</summary>
    private sealed class TokenAnswers(InferStream stream, PreparedRequest prepared) : ITokenSink
    {
        public void Write(GeneratedToken token, DateTimeOffset producedAt)
        {
            if (token.Text.Length > 0)
            {
                stream.Send(new ModelStreamInferResponse { InferResponse = GrpcResponses.Token(prepared.Request, prepared.ServingVersion, token.Text) });
            }
        }

        public void Complete()
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "A gRPC inference stream failed on request {RequestId}")]
    private static partial void LogRequestFailed(ILogger logger, Exception ex, string requestId);

    [LoggerMessage(Level = LogLevel.Information, Message = "A gRPC inference stream was idle for {Seconds} s; it was ended")]
    private static partial void LogIdle(ILogger logger, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A gRPC inference stream kept sending past its {Limit} messages per second; it was ended")]
    private static partial void LogOverBudget(ILogger logger, int limit);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A gRPC inference stream left more than {Bytes} bytes of answers unread; the caller was dropped")]
    private static partial void LogSlowReader(ILogger logger, long bytes);
}
