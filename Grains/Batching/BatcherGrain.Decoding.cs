using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using StreamInfer.Grains.Metrics;
using StreamInfer.Grains.Models.Decoding;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// Continuous batching for decoder models. Sequences join the running set between steps (up to <c>max_batch_size</c>
/// of them and the device's key/value cache budget) and leave between steps when they finish, are cancelled or pass
/// their deadline, freeing their slot and cache at once. One step at a time runs on the device; each step's tokens go
/// out as one <see cref="DeliveryBatch"/> per destination frontend, in step order.
/// </summary>
internal sealed partial class BatcherGrain
{
    private static readonly TimeSpan KeepAliveWhileDecoding = TimeSpan.FromMinutes(5);

    private readonly List<Running> _sequences = [];
    private readonly Dictionary<string, Task> _publishing = new(StringComparer.Ordinal);
    private DecodeLoop? _loop;
    private long _reservedCacheBytes;
    private bool _stepping;
    private bool _deactivating;
    private long _stepsRun;
    private double _recentSequenceMs;
    private long _sequencesDone;

    /// <summary>Sequences decoding now (for status).</summary>
    private int ActiveSequences => _sequences.Count;

    private InferError? PrepareSequence(OnnxDecoderModel decoder, BatchItem item, out DecodeSequence? sequence)
    {
        (sequence, var error) = decoder.Prepare(item.Request);
        if (error is null && decoder.ReservedBytes(sequence!) > decoder.KvCacheBytes)
        {
            error = new InferError(ErrorCode.InvalidInput, $"the prompt and max_tokens need {decoder.ReservedBytes(sequence!) >> 20} MiB of key/value cache; model '{_key.Model}' has {decoder.KvCacheBytes >> 20} MiB per device. Ask for fewer tokens.");
            sequence = null;
        }

        return error;
    }

    /// <summary>
    /// How long a request that has <paramref name="ahead"/> requests before it waits to start: nothing while a slot is
    /// free, else one recent sequence's lifetime per full set of slots ahead of it.
    /// </summary>
    private double DecoderExpectedWaitMs(long ahead)
    {
        var slots = _model!.Options.MaxBatchSize;
        if (_sequences.Count + ahead < slots)
        {
            return 0;
        }

        return Math.Ceiling((double)(ahead + 1) / slots) * _recentSequenceMs;
    }

    /// <summary>The device side of the running set, created with the first sequence (and again after a failure).</summary>
    private DecodeLoop Loop => _loop ??= new DecodeLoop(_device!, time);

    /// <summary>
    /// Moves queued requests into the running set while there are slots and cache, highest priority first, hands them
    /// to the device loop (they join at its next step), and starts reading its steps if nothing reads them.
    /// </summary>
    private void AdmitSequences(OnnxDecoderModel decoder)
    {
        var slots = _model!.Options.MaxBatchSize;
        while (_sequences.Count < slots && _queue.TryPeek(out var q))
        {
            var bytes = ((OnnxDecoderModel)q.Lease.Model).ReservedBytes(q.Sequence!);
            if (_reservedCacheBytes + bytes > decoder.KvCacheBytes && _sequences.Count > 0)
            {
                // The cache is full: the request waits at the head of the queue until a sequence leaves.
                break;
            }

            _queue.TakeBatch(1);
            q.Running = true;
            _reservedCacheBytes += bytes;
            var running = new Running(q, bytes, time.GetTimestamp());
            _sequences.Add(running);
            Loop.PrefillBudget = decoder.MaxPrefillTokens;
            Loop.Join(running);
            GridMetrics.Queued(_key.Model, q.Lease.Model.Version, _key.Device, time.GetElapsedTime(q.EnqueuedAt).TotalSeconds, -1);
        }

        if (!_stepping && _sequences.Count > 0)
        {
            _stepping = true;
            _ = ConsumeStepsAsync();
        }
    }

    /// <summary>Has the device drop running sequences whose clients cancelled them, at its next step.</summary>
    private void FlagCancelledSequences()
    {
        foreach (var r in _sequences)
        {
            if (r.Queued.Cancelled)
            {
                r.Leaving = true;
            }
        }
    }

    /// <summary>
    /// Reads the device loop's steps while sequences run: delivers each step's tokens (one batch per destination), lets
    /// finished, cancelled, expired and failed sequences leave, and admits from the queue, all while the device already
    /// runs the next step.
    /// </summary>
    private async Task ConsumeStepsAsync()
    {
        long previousEnd = 0;
        try
        {
            while (_sequences.Count > 0)
            {
                // Steps are not grain calls: without this, a batcher that only decodes could be collected as idle.
                DelayDeactivation(KeepAliveWhileDecoding);
                var loop = Loop;
                var step = await loop.NextAsync();
                if (step is null || _deactivating)
                {
                    // Stopped (deactivation, or a drain that timed out): whoever stopped it ended the sequences.
                    return;
                }

                GridMetrics.HandedOff(_key.Model, _key.Device, (time.GetUtcNow() - step.ProducedAt).TotalSeconds);
                previousEnd = OnStep(step, previousEnd);
                ExpireQueued(time.GetUtcNow());
                if (_instance is OnnxDecoderModel decoder)
                {
                    AdmitSequences(decoder);
                }

                loop.Resume();
            }
        }
        catch (Exception ex)
        {
            // A bug here must not leave streams hanging until their watchdog: end them all. Their caches are not
            // returned to the pool, since a step may still be writing them.
            LogStepLoopFailed(logger, ex, _key.Model);
            _loop?.Stop();
            _loop = null;
            var error = new InferError(ErrorCode.Internal, $"the decoding loop of model '{_key.Model}' failed: {ex.GetType().Name}.");
            var failed = _sequences.Where(r => !r.Queued.Cancelled).ToList();
            foreach (var r in _sequences)
            {
                _reservedCacheBytes -= r.ReservedBytes;
                _byId.Remove((r.Queued.Item.ClientId, r.Queued.Item.Request.RequestId));
            }

            _sequences.Clear();
            Finish([.. failed.Select(r => (r, ToDelivery(r.Queued, null, error)))], failed, time.GetUtcNow());
        }
        finally
        {
            _stepping = false;
            // A request queued while the last step ran may be waiting for a slot that has just come free.
            if (_queue.Count > 0 && _instance is OnnxDecoderModel d)
            {
                AdmitSequences(d);
            }
        }
    }

    /// <summary>Takes one device step's outcome: its metrics, its deliveries, and the sequences that left. Returns the
    /// step's end, from which the next step's period is measured.</summary>
    private long OnStep(DecodeStepResult step, long previousEnd)
    {
        var deliveries = new List<(Running, Delivery)>();
        var ended = new List<Running>();
        foreach (var r in step.Dropped.Cast<Running>())
        {
            // Cancelled, or past its deadline. Off the device now: its assembler is ours, and releases what it held back
            // with the end (finish_reason "deadline", its tokens so far delivered before).
            ended.Add(r);
            if (!r.Queued.Cancelled)
            {
                deliveries.Add((r, ToDelivery(r, null, Done(r, FinishReasons.Deadline, r.Queued.Sequence!.Assembler.Finish().Text))));
            }
        }

        if (step.Stepping.Count > 0)
        {
            _stepsRun++;
            var stepMs = time.GetElapsedTime(step.RanAt, step.EndedAt).TotalMilliseconds;
            _recentBatchMs = _stepsRun == 1 ? stepMs : (0.8 * _recentBatchMs) + (0.2 * stepMs);
            RecordBatch(step.Stepping.Count);
            var stepVersion = ((Running)step.Stepping[0]).Queued.Lease.Model.Version;
            GridMetrics.Batch(_key.Model, stepVersion, _key.Device, step.Stepping.Count);
            if (!step.First && previousEnd != 0)
            {
                // A running sequence's tokens come one step period apart: the step itself plus the device's wait for it.
                GridMetrics.Step(_key.Model, stepVersion, _key.Device, time.GetElapsedTime(previousEnd, step.EndedAt).TotalSeconds, time.GetElapsedTime(previousEnd, step.RanAt).TotalSeconds);
            }

            previousEnd = step.EndedAt;
        }

        if (step.Failure is { } failure)
        {
            LogBatchFailed(logger, failure, _key.Model, step.Failed.Count);
            var error = new InferError(ErrorCode.Internal, $"model '{_key.Model}' failed on a decoding step: {failure.GetType().Name}.");
            foreach (var r in step.Failed.Cast<Running>())
            {
                ended.Add(r);
                if (!r.Queued.Cancelled)
                {
                    deliveries.Add((r, ToDelivery(r.Queued, null, error)));
                }
            }
        }

        foreach (var (running, outcome) in step.Outcomes)
        {
            var r = (Running)running;
            if (outcome.Token is not null && r.FirstTokenAt == 0)
            {
                r.FirstTokenAt = time.GetTimestamp();
                GridMetrics.FirstToken(_key.Model, r.Queued.Lease.Model.Version, _key.Device, time.GetElapsedTime(r.Queued.EnqueuedAt, r.FirstTokenAt).TotalSeconds);
            }

            if (outcome.FinishReason is not null)
            {
                ended.Add(r);
            }

            if (r.Queued.Cancelled)
            {
                continue;
            }

            var done = outcome.FinishReason is { } why ? Done(r, why, outcome.FinalText) : null;
            if (outcome.Token is not null || done is not null)
            {
                deliveries.Add((r, ToDelivery(r, outcome.Token, done)));
            }
        }

        Leave(ended);
        Finish(deliveries, [.. ended.Where(r => !r.Queued.Cancelled)], step.ProducedAt);
        return previousEnd;
    }

    /// <summary>Frees the slots and caches of sequences that have ended.</summary>
    private void Leave(List<Running> ended)
    {
        foreach (var r in ended)
        {
            if (!_sequences.Remove(r))
            {
                continue;
            }

            r.Queued.Sequence!.Release();
            r.Queued.End();
            _reservedCacheBytes -= r.ReservedBytes;
            // Only its own entry: a client may have cancelled it and sent a new request with the same id meanwhile.
            var key = (r.Queued.Item.ClientId, r.Queued.Item.Request.RequestId);
            if (_byId.TryGetValue(key, out var current) && current == r.Queued)
            {
                _byId.Remove(key);
            }

            _itemsRun++;
            _sequencesDone++;
            var lifetime = time.GetElapsedTime(r.JoinedAt).TotalMilliseconds;
            _recentSequenceMs = _sequencesDone == 1 ? lifetime : (0.9 * _recentSequenceMs) + (0.1 * lifetime);
        }

        ReportDepth();
    }

    /// <summary>Publishes one step's deliveries, keeping each destination's events in step order, and tells sessions
    /// which requests ended.</summary>
    private void Finish(List<(Running Sequence, Delivery Delivery)> deliveries, List<Running> ended, DateTimeOffset producedAt)
    {
        if (deliveries.Count == 0 && ended.Count == 0)
        {
            return;
        }

        activity.NotifyActivity();
        RecordEnds(deliveries);
        foreach (var group in deliveries.GroupBy(d => d.Sequence.Queued.Item.Request.ReplyTo))
        {
            var replyTo = group.Key;
            var observer = group.First().Sequence.Queued.Item.Request.ReplyObserver;
            ImmutableArray<Delivery> items = [.. group.Select(d => d.Delivery)];
            PublishInOrder(replyTo, observer, new DeliveryBatch(items, producedAt));
        }

        foreach (var group in ended.GroupBy(r => r.Queued.Item.ClientId))
        {
            _ = NotifySessionAsync(group.Key, [.. group.Select(r => r.Queued.Item.Request.RequestId)]);
        }
    }

    /// <summary>Counts the sequences that ended this step, by outcome (a cancelled one was counted when it was cancelled).</summary>
    private void RecordEnds(List<(Running Sequence, Delivery Delivery)> deliveries)
    {
        foreach (var (r, d) in deliveries)
        {
            if (d.IsEnd)
            {
                var code = d.Error is { } error ? error.Code.ToWire() : d.Done!.FinishReason switch
                {
                    FinishReasons.Cancelled => ErrorCode.Cancelled.ToWire(),
                    FinishReasons.Deadline => ErrorCode.DeadlineExceeded.ToWire(),
                    _ => GridMetrics.Ok,
                };
                GridMetrics.Ended(_key.Model, r.Queued.Lease.Model.Version, _key.Device, code, time.GetElapsedTime(r.Queued.EnqueuedAt).TotalSeconds);
            }
        }

        ReportDepth();
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "The decoding loop of model {Model} failed; its running sequences were ended")]
    private static partial void LogStepLoopFailed(ILogger logger, Exception ex, string model);

    /// <summary>Publishes <paramref name="batch"/> to <paramref name="replyTo"/> after the events already on their way
    /// there: concurrent calls (or publishes) to one frontend could overtake each other.</summary>
    private Task PublishInOrder(string replyTo, IDeliveryObserver? observer, DeliveryBatch batch)
    {
        var previous = _publishing.GetValueOrDefault(replyTo);
        var publish = previous is null || previous.IsCompleted ? PublishAsync(replyTo, observer, batch) : PublishAfterAsync(previous, replyTo, observer, batch);
        _publishing[replyTo] = publish;
        return publish;
    }

    private async Task PublishAfterAsync(Task previous, string replyTo, IDeliveryObserver? observer, DeliveryBatch batch)
    {
        await previous;
        await PublishAsync(replyTo, observer, batch);
    }

    private Delivery ToDelivery(Running r, GeneratedToken? token, GenerationDone? done)
        => new(r.Queued.Item.ClientId, r.Queued.Item.Request.RequestId, null, null, token, done);

    private GenerationDone Done(Running r, string reason, string text)
    {
        var seq = r.Queued.Sequence!;
        var completion = seq.Generated - (reason == FinishReasons.Stop && seq.LastToken == seq.EndOfText ? 1 : 0);
        return new GenerationDone(
            _key.Model,
            r.Queued.Lease.Model.Version,
            reason,
            seq.Prompt.Length,
            Math.Max(0, completion),
            text,
            time.GetElapsedTime(r.Queued.EnqueuedAt, r.JoinedAt).TotalMilliseconds,
            r.FirstTokenAt == 0 ? 0 : time.GetElapsedTime(r.Queued.EnqueuedAt, r.FirstTokenAt).TotalMilliseconds);
    }

    private void RecordBatch(int size)
    {
        _batchesRun++;
        if (_recentBatchSizes.Count == RecentBatchWindow)
        {
            _recentBatchSizes.Dequeue();
        }

        _recentBatchSizes.Enqueue(size);
    }

    /// <summary>A sequence in the running set: its queue entry, the cache it reserved, and when it joined and first produced.</summary>
    private sealed class Running(Queued queued, long reservedBytes, long joinedAt)
        : DecodeRunning(queued.Sequence!, (OnnxDecoderModel)queued.Lease.Model, queued.Item.Deadline)
    {
        public Queued Queued { get; } = queued;

        public long ReservedBytes { get; } = reservedBytes;

        public long JoinedAt { get; } = joinedAt;

        public long FirstTokenAt { get; set; }
    }
}
