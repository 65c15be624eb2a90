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

    /// <summary>
    /// Moves queued requests into the running set while there are slots and cache, highest priority first, and starts
    /// the step loop if it is not running (the loop itself admits with <paramref name="startLoop"/> false).
    /// </summary>
    private void AdmitSequences(OnnxDecoderModel decoder, bool startLoop = true)
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
            _sequences.Add(new Running(q, bytes, time.GetTimestamp()));
            GridMetrics.Queued(_key.Model, q.Lease.Model.Version, _key.Device, time.GetElapsedTime(q.EnqueuedAt).TotalSeconds, -1);
        }

        if (startLoop && !_stepping && _sequences.Count > 0)
        {
            _stepping = true;
            _ = StepLoopAsync(decoder);
        }
    }

    private async Task StepLoopAsync(OnnxDecoderModel decoder)
    {
        // The previous step's deliveries are published while the next step runs on the device, so the device does not
        // wait on serialization and stream calls (bench/decode-grid.sh: see BENCHMARKS.md).
        (List<(Running, Delivery)> Deliveries, List<Running> Ended, DateTimeOffset ProducedAt)? previous = null;
        // When the previous step of this running set ended on the device (0: none yet), for the step metrics.
        long previousEnd = 0;
        try
        {
            while (true)
            {
                // Steps are not grain calls: without this, a batcher that only decodes could be collected as idle.
                DelayDeactivation(KeepAliveWhileDecoding);
                var now = time.GetUtcNow();
                var deliveries = new List<(Running, Delivery)>();
                var ended = new List<Running>();

                // Leave between steps: cancelled ones silently (their session already let them go), expired ones with
                // their tokens so far and finish_reason "deadline".
                foreach (var r in _sequences)
                {
                    if (r.Queued.Cancelled)
                    {
                        ended.Add(r);
                    }
                    else if (r.Queued.Item.Deadline <= now)
                    {
                        // Between steps the assembler is ours: release what it held back with the end.
                        ended.Add(r);
                        deliveries.Add((r, ToDelivery(r, null, Done(r, FinishReasons.Deadline, r.Queued.Sequence!.Assembler.Finish().Text))));
                    }
                }

                Leave(ended);
                ExpireQueued(now);
                AdmitSequences(decoder, startLoop: false);
                if (deliveries.Count > 0)
                {
                    // After the previous step's tokens, which are not published yet: an end never overtakes a token.
                    var expired = ended.Where(r => !r.Queued.Cancelled).ToList();
                    if (previous is { } pending)
                    {
                        pending.Deliveries.AddRange(deliveries);
                        pending.Ended.AddRange(expired);
                    }
                    else
                    {
                        Finish(deliveries, expired, now);
                    }
                }

                if (_sequences.Count == 0)
                {
                    break;
                }

                // Prefill chunks in arrival order up to the step's budget, so a long prompt costs other streams at most
                // one chunk's time per step; every decoding sequence advances by one token.
                // Sequences run on the version they started with: during a rollout a step runs each version's part.
                var budget = decoder.MaxPrefillTokens;
                var plan = new Dictionary<OnnxDecoderModel, (List<(DecodeSequence, int)> Prefill, List<DecodeSequence> Decode)>();
                var stepping = new List<Running>(_sequences.Count);
                foreach (var r in _sequences)
                {
                    var seq = r.Queued.Sequence!;
                    var version = (OnnxDecoderModel)r.Queued.Lease.Model;
                    if (!plan.TryGetValue(version, out var part))
                    {
                        part = ([], []);
                        plan[version] = part;
                    }

                    if (seq.Decoding)
                    {
                        part.Decode.Add(seq);
                        stepping.Add(r);
                    }
                    else if (budget > 0)
                    {
                        var chunk = Math.Min(budget, seq.Prompt.Length - seq.Prefilled);
                        budget -= chunk;
                        part.Prefill.Add((seq, chunk));
                        stepping.Add(r);
                    }
                }

                List<StepOutcome>? outcomes = null;
                Exception? failure = null;
                // Read on the device thread, so that the step's times exclude the hops to and from it.
                long ranAt = 0, endedAt = 0;
                var producedAt = DateTimeOffset.MinValue;
                var step = _device!.RunAsync(() =>
                {
                    ranAt = time.GetTimestamp();
                    try
                    {
                        if (plan.Count == 1)
                        {
                            var (only, part) = plan.First();
                            return only.Step(part.Prefill, part.Decode);
                        }

                        var all = new List<StepOutcome>();
                        foreach (var (version, part) in plan)
                        {
                            all.AddRange(version.Step(part.Prefill, part.Decode));
                        }

                        return all;
                    }
                    finally
                    {
                        endedAt = time.GetTimestamp();
                        producedAt = time.GetUtcNow();
                    }
                });
                if (previous is { } published)
                {
                    previous = null;
                    Finish(published.Deliveries, published.Ended, published.ProducedAt);
                }

                try
                {
                    outcomes = await step;
                }
                catch (Exception ex)
                {
                    failure = ex;
                }

                if (_deactivating)
                {
                    // OnDeactivateAsync has ended every running sequence with an error; nothing more goes out.
                    previous = null;
                    return;
                }

                _stepsRun++;
                if (endedAt == 0)
                {
                    // The step never reached the device (its queue refused it).
                    ranAt = endedAt = time.GetTimestamp();
                    producedAt = time.GetUtcNow();
                }

                var stepTime = time.GetElapsedTime(ranAt, endedAt);
                _recentBatchMs = _stepsRun == 1 ? stepTime.TotalMilliseconds : (0.8 * _recentBatchMs) + (0.2 * stepTime.TotalMilliseconds);
                RecordBatch(stepping.Count);
                var stepVersion = stepping[0].Queued.Lease.Model.Version;
                GridMetrics.Batch(_key.Model, stepVersion, _key.Device, stepping.Count);
                if (previousEnd != 0)
                {
                    // A running sequence's tokens come one step period apart: the step itself plus the device's wait for it.
                    GridMetrics.Step(_key.Model, stepVersion, _key.Device, time.GetElapsedTime(previousEnd, endedAt).TotalSeconds, time.GetElapsedTime(previousEnd, ranAt).TotalSeconds);
                }

                previousEnd = endedAt;

                deliveries = [];
                ended = [];
                if (failure is not null)
                {
                    LogBatchFailed(logger, failure, _key.Model, stepping.Count);
                    var error = new InferError(ErrorCode.Internal, $"model '{_key.Model}' failed on a decoding step: {failure.GetType().Name}.");
                    foreach (var r in stepping)
                    {
                        ended.Add(r);
                        if (!r.Queued.Cancelled)
                        {
                            deliveries.Add((r, ToDelivery(r.Queued, null, error)));
                        }
                    }
                }
                else
                {
                    var byStep = stepping.ToDictionary(r => r.Queued.Sequence!);
                    foreach (var outcome in outcomes!)
                    {
                        var r = byStep[outcome.Sequence];
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
                }

                Leave(ended);
                previous = (deliveries, ended.Where(r => !r.Queued.Cancelled).ToList(), producedAt);
            }
        }
        catch (Exception ex)
        {
            // A bug here must not leave streams hanging until their watchdog: end them all. Their caches are not
            // returned to the pool, since a step may still be writing them.
            LogStepLoopFailed(logger, ex, _key.Model);
            var error = new InferError(ErrorCode.Internal, $"the decoding loop of model '{_key.Model}' failed: {ex.GetType().Name}.");
            var failed = _sequences.Where(r => !r.Queued.Cancelled).ToList();
            foreach (var r in _sequences)
            {
                _reservedCacheBytes -= r.ReservedBytes;
                _byId.Remove((r.Queued.Item.ClientId, r.Queued.Item.Request.RequestId));
            }

            _sequences.Clear();
            var deliveries = failed.Select(r => (r, ToDelivery(r.Queued, null, error))).ToList();
            if (previous is { } pending)
            {
                pending.Deliveries.AddRange(deliveries);
                pending.Ended.AddRange(failed);
            }
            else
            {
                previous = (deliveries, failed, time.GetUtcNow());
            }
        }
        finally
        {
            if (previous is { } last)
            {
                Finish(last.Deliveries, last.Ended, last.ProducedAt);
            }

            _stepping = false;
            // A request queued while the last step ran may be waiting for a slot that has just come free.
            if (_queue.Count > 0 && _instance is OnnxDecoderModel d)
            {
                AdmitSequences(d);
            }
        }
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
            _byId.Remove((r.Queued.Item.ClientId, r.Queued.Item.Request.RequestId));
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
            var previous = _publishing.GetValueOrDefault(replyTo) ?? Task.CompletedTask;
            // Each destination's events are chained: concurrent calls (or publishes) to one frontend could overtake each other.
            var batch = new DeliveryBatch(items, producedAt);
            _publishing[replyTo] = previous.IsCompleted ? PublishAsync(replyTo, observer, batch) : PublishAfterAsync(previous, replyTo, observer, batch);
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
    {
        public Queued Queued { get; } = queued;

        public long ReservedBytes { get; } = reservedBytes;

        public long JoinedAt { get; } = joinedAt;

        public long FirstTokenAt { get; set; }
    }
}
