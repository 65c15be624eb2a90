using Microsoft.Extensions.Logging;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// Continuous batching for decoder models. Sequences join the running set between steps (up to <c>MaxBatchSize</c> of
/// them and the device's key/value cache budget) and leave between steps when they finish, are cancelled or pass their
/// deadline, freeing their slot and cache at once. The steps run on the device in a <see cref="DecodeLoop"/>; each
/// step's tokens are handed over as they come, in step order.
/// </summary>
internal sealed partial class ContinuousBatching(BatcherContext context, ModelOptions options, IDecoderModel model) : IBatchScheduler
{
    private readonly TimeProvider _time = context.Time;
    private readonly List<RunningSequence> _sequences = [];
    private ModelOptions _options = options;
    private IDecoderModel _serving = model;
    private DecodeLoop? _loop;
    private long _reservedCacheBytes;
    private bool _stepping;
    private bool _aborted;
    private TaskCompletionSource? _idle;

    // Admission's estimate of how long a sequence holds its slot: recent sequences' lifetimes.
    private double _recentSequenceMs;
    private long _sequencesDone;

    public int Running => _stepping ? 1 : 0;

    public int Active => _sequences.Count;

    public bool Idle => _sequences.Count == 0;

    public BatchStats Stats { get; } = new();

    /// <summary>The device side of the running set, created with the first sequence (and again after a failure).</summary>
    private DecodeLoop Loop => _loop ??= new DecodeLoop(context.Device, _time);

    public void Serve(ModelOptions options, IInferenceModel model)
    {
        _options = options;
        if (model is IDecoderModel decoder)
        {
            _serving = decoder;
        }
    }

    /// <summary>Tokenizing a prompt takes time in proportion to it (up to the model's context): it is done on the thread
    /// pool. Check reads nothing of this scheduler's state.</summary>
    public bool ChecksOffScheduler => true;

    public SchedulerCheck Check(IInferenceModel model, BatchItem item)
    {
        if (model is not IDecoderModel decoder)
        {
            return BatchSchedulers.ChangedKind(context.Key.Model);
        }

        if (item.Request.Sequence is not null)
        {
            return BatchSchedulers.Stateless(context.Key.Model);
        }

        var (sequence, error) = decoder.Prepare(item.Request);
        if (error is not null)
        {
            return new SchedulerCheck(error, 0);
        }

        var bytes = decoder.ReservedBytes(sequence!);
        if (bytes > decoder.KvCacheBytes)
        {
            return new SchedulerCheck(new InferError(ErrorCode.InvalidInput, $"the prompt and max_tokens need {bytes >> 20} MiB of key/value cache; model '{context.Key.Model}' has {decoder.KvCacheBytes >> 20} MiB per device. Ask for fewer tokens."), 0);
        }

        return new SchedulerCheck(null, 1, new PreparedSequence(sequence!, decoder, bytes));
    }

    /// <summary>Nothing while a slot is free, else one recent sequence's lifetime per full set of slots ahead.</summary>
    public double ExpectedWaitMs(long rowsAhead, int rows)
    {
        var slots = _options.MaxBatchSize;
        return _sequences.Count + rowsAhead < slots ? 0 : Math.Ceiling((double)(rowsAhead + 1) / slots) * _recentSequenceMs;
    }

    /// <summary>
    /// Moves waiting requests into the running set while there are slots and cache, highest priority first, hands them
    /// to the device loop (they join at its next step), and starts reading its steps if nothing reads them. A waiting
    /// request waits for a slot, not for batch-mates: only deadlines need a wake-up.
    /// </summary>
    public DateTimeOffset Dispatch(DateTimeOffset now)
    {
        while (!_aborted && _sequences.Count < _options.MaxBatchSize && context.Queue.TryPeek(out var q))
        {
            var prepared = q.Sequence!;
            if (_reservedCacheBytes + prepared.ReservedBytes > _serving.KvCacheBytes && _sequences.Count > 0)
            {
                // The cache is full: the request waits at the head of the queue until a sequence leaves.
                break;
            }

            context.Queue.TakeBatch(1);
            q.Running = true;
            _reservedCacheBytes += prepared.ReservedBytes;
            var running = new RunningSequence(q, _time.GetTimestamp());
            _sequences.Add(running);
            Loop.PrefillBudget = _serving.MaxPrefillTokens;
            Loop.Join(running);
            context.Metrics.Queued(context.Key.Model, q.Lease.Model.Version, context.Key.Device, _time.GetElapsedTime(q.EnqueuedAt).TotalSeconds, -1);
        }

        if (!_stepping && _sequences.Count > 0)
        {
            _stepping = true;
            _ = ConsumeStepsAsync();
        }

        return DateTimeOffset.MaxValue;
    }

    /// <summary>Has the device drop the cancelled sequences at its next step.</summary>
    public void Cancelled()
    {
        foreach (var r in _sequences)
        {
            if (r.Request.Cancelled)
            {
                r.Leaving = true;
            }
        }
    }

    /// <summary>Stops the loop; the sequences' caches (and versions) are not let go: a step may still be using them.</summary>
    public List<QueuedRequest> Abort()
    {
        _aborted = true;
        var ended = _sequences.Where(r => !r.Request.Cancelled).Select(r => r.Request).ToList();
        _sequences.Clear();
        _loop?.Stop();
        _loop = null;
        SignalIdle();
        return ended;
    }

    public Task WhenIdleAsync()
    {
        if (_sequences.Count == 0)
        {
            return Task.CompletedTask;
        }

        _idle ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return _idle.Task;
    }

    /// <summary>
    /// Reads the device loop's steps while sequences run: hands each step's tokens over, lets finished, cancelled,
    /// expired and failed sequences leave, and admits from the queue, all while the device already runs the next step.
    /// </summary>
    private async Task ConsumeStepsAsync()
    {
        long previousEnd = 0;
        try
        {
            while (_sequences.Count > 0)
            {
                context.Host.KeepAlive();
                var loop = Loop;
                var step = await loop.NextAsync();
                if (step is null || _aborted)
                {
                    // Stopped: whoever stopped it ended the sequences.
                    return;
                }

                context.Metrics.HandedOff(context.Key.Model, context.Key.Device, (_time.GetUtcNow() - step.ProducedAt).TotalSeconds);
                previousEnd = OnStep(step, previousEnd);
                context.Host.Pump();
                loop.Resume();
            }
        }
        catch (Exception ex)
        {
            // A bug here must not leave streams hanging until their watchdog: end them all. Their caches are not
            // returned to the pool, since a step may still be writing them.
            LogStepLoopFailed(context.Logger, ex, context.Key.Model);
            _loop?.Stop();
            _loop = null;
            var error = new InferError(ErrorCode.Internal, $"the decoding loop of model '{context.Key.Model}' failed: {ex.GetType().Name}.");
            var failed = _sequences.Where(r => !r.Request.Cancelled).Select(r => new RequestOutcome(r.Request, new Delivery(r.Request.Item.ClientId, r.Request.Item.Request.RequestId, null, error))).ToList();
            _reservedCacheBytes -= _sequences.Sum(r => r.Request.Sequence!.ReservedBytes);
            _sequences.Clear();
            SignalIdle();
            _ = context.Host.Finish(failed, _time.GetUtcNow(), ordered: true);
        }
        finally
        {
            _stepping = false;
            // A request queued while the last step ran may be waiting for a slot that has just come free.
            if (context.Queue.Count > 0)
            {
                context.Host.Pump();
            }
        }
    }

    /// <summary>Takes one device step's outcome: its metrics, its deliveries, and the sequences that left. Returns the
    /// step's end, from which the next step's period is measured.</summary>
    private long OnStep(DecodeStepResult step, long previousEnd)
    {
        var outcomes = new List<RequestOutcome>();
        var left = new List<RunningSequence>();
        foreach (var r in step.Dropped.Cast<RunningSequence>())
        {
            // Cancelled, or past its deadline. Off the device now: its assembler is ours, and releases what it held back
            // with the end (its tokens so far were delivered before).
            left.Add(r);
            if (!r.Request.Cancelled)
            {
                outcomes.Add(Outcome(r, null, Done(r, FinishReasons.Deadline, r.Sequence.Assembler.Finish().Text)));
            }
        }

        if (step.Stepping.Count > 0)
        {
            Stats.Batch(step.Stepping.Count);
            var version = ((RunningSequence)step.Stepping[0]).Request.Lease.Model.Version;
            context.Metrics.Batch(context.Key.Model, version, context.Key.Device, step.Stepping.Count);
            if (!step.First && previousEnd != 0)
            {
                // A running sequence's tokens come one step period apart: the step itself plus the device's wait for it.
                context.Metrics.Step(context.Key.Model, version, context.Key.Device, _time.GetElapsedTime(previousEnd, step.EndedAt).TotalSeconds, _time.GetElapsedTime(previousEnd, step.RanAt).TotalSeconds);
            }

            previousEnd = step.EndedAt;
        }

        if (step.Failure is { } failure)
        {
            LogStepFailed(context.Logger, failure, context.Key.Model, step.Failed.Count);
            var error = new InferError(ErrorCode.Internal, $"model '{context.Key.Model}' failed on a decoding step: {failure.GetType().Name}.");
            foreach (var r in step.Failed.Cast<RunningSequence>())
            {
                left.Add(r);
                if (!r.Request.Cancelled)
                {
                    outcomes.Add(new RequestOutcome(r.Request, new Delivery(r.Request.Item.ClientId, r.Request.Item.Request.RequestId, null, error)));
                }
            }
        }

        foreach (var (running, outcome) in step.Outcomes)
        {
            var r = (RunningSequence)running;
            if (outcome.Token is not null && r.FirstTokenAt == 0)
            {
                r.FirstTokenAt = _time.GetTimestamp();
                context.Metrics.FirstToken(context.Key.Model, r.Request.Lease.Model.Version, context.Key.Device, _time.GetElapsedTime(r.Request.EnqueuedAt, r.FirstTokenAt).TotalSeconds);
            }

            if (outcome.FinishReason is not null)
            {
                left.Add(r);
            }

            if (r.Request.Cancelled)
            {
                continue;
            }

            var done = outcome.FinishReason is { } why ? Done(r, why, outcome.FinalText) : null;
            if (outcome.Token is not null || done is not null)
            {
                outcomes.Add(Outcome(r, outcome.Token, done));
            }
        }

        Leave(left);
        _ = context.Host.Finish(outcomes, step.ProducedAt, ordered: true);
        return previousEnd;
    }

    /// <summary>Frees the slots and caches of sequences that have ended.</summary>
    private void Leave(List<RunningSequence> left)
    {
        foreach (var r in left)
        {
            if (!_sequences.Remove(r))
            {
                continue;
            }

            r.Sequence.Release();
            r.Request.End();
            _reservedCacheBytes -= r.Request.Sequence!.ReservedBytes;
            Stats.Items(1);
            _sequencesDone++;
            var lifetime = _time.GetElapsedTime(r.JoinedAt).TotalMilliseconds;
            _recentSequenceMs = _sequencesDone == 1 ? lifetime : (0.9 * _recentSequenceMs) + (0.1 * lifetime);
        }

        if (_sequences.Count == 0)
        {
            SignalIdle();
        }
    }

    private void SignalIdle()
    {
        if (_idle is { } idle)
        {
            _idle = null;
            idle.TrySetResult();
        }
    }

    private static RequestOutcome Outcome(RunningSequence r, GeneratedToken? token, GenerationDone? done)
        => new(r.Request, new Delivery(r.Request.Item.ClientId, r.Request.Item.Request.RequestId, null, null, token, done));

    private GenerationDone Done(RunningSequence r, string reason, string text)
    {
        var seq = r.Sequence;
        var completion = seq.Generated - (reason == FinishReasons.Stop && seq.LastToken == seq.EndOfText ? 1 : 0);
        return new GenerationDone(
            context.Key.Model,
            r.Request.Lease.Model.Version,
            reason,
            seq.Prompt.Length,
            Math.Max(0, completion),
            text,
            _time.GetElapsedTime(r.Request.EnqueuedAt, r.JoinedAt).TotalMilliseconds,
            r.FirstTokenAt == 0 ? 0 : _time.GetElapsedTime(r.Request.EnqueuedAt, r.FirstTokenAt).TotalMilliseconds);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Model} failed on a batch of {Count}")]
    private static partial void LogStepFailed(ILogger logger, Exception ex, string model, int count);

    [LoggerMessage(Level = LogLevel.Error, Message = "The decoding loop of model {Model} failed; its running sequences were ended")]
    private static partial void LogStepLoopFailed(ILogger logger, Exception ex, string model);

    /// <summary>A sequence in the running set: its request, and when it joined and first produced.</summary>
    private sealed class RunningSequence(QueuedRequest request, long joinedAt)
        : DecodeRunning(request.Sequence!.Sequence, request.Sequence.Model, request.Item.Deadline)
    {
        public QueuedRequest Request { get; } = request;

        public long JoinedAt { get; } = joinedAt;

        public long FirstTokenAt { get; set; }
    }
}
