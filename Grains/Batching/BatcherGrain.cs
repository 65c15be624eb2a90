using System.Collections.Immutable;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using Orleans.Streams;
using StreamInfer.Grains.Clocks;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Metrics;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Placement;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// The dynamic batcher of one model on one device, in the shape of a queue, an interleaved timer and a bounded number
/// of batches in flight. A batch is dispatched when <c>MaxBatchSize</c> requests are queued, or when the oldest has
/// waited <c>MaxWait</c> (at once when <c>MaxWait</c> is zero), and only while fewer than <c>MaxConcurrentBatches</c>
/// are on the device; a finished batch dispatches the next at once. Every method body is synchronous up to its first
/// await, and the grain is reentrant so that enqueues keep flowing while a batch is on the device.
/// </summary>
[Reentrant]
[SiloKeyPlacement]
internal sealed partial class BatcherGrain(
    ModelCatalog catalog,
    DeviceRegistry devices,
    ClusterLoad load,
    IActivitySignal activity,
    ILocalSiloDetails silo,
    [FromKeyedServices(StreamInferClock.Key)] TimeProvider time,
    ILogger<BatcherGrain> logger) : Grain, IBatcherGrain
{
    private const int RecentBatchWindow = 64;

    // A refused publish is retried after 0.1, 0.2, 0.4, 0.8 s, then every second, for 10 s in all: a silo's death takes
    // 2-3 s to declare on an idle machine, and the stream queue's directory entry moves some seconds later under load
    // (ClusterFaultTests saw 3.1 s of retries fall short with two cores saturated).
    private static readonly TimeSpan PublishRetryFirst = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan PublishRetryMax = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan PublishRetryBudget = TimeSpan.FromSeconds(10);

    // However long one attempt took (a call waits out its response timeout), a failed delivery is tried this many times.
    private const int PublishMinAttempts = 4;

    // After a delivery to a frontend has failed every retry, deliveries to it are dropped at once for this long.
    private static readonly TimeSpan UnreachableFor = TimeSpan.FromSeconds(30);

    // Within one load refresh (250 ms by default) every silo has stopped choosing a draining one.
    private const int DrainRetryAfterMs = 250;

    private LeveledQueue<Queued> _queue = new(1, static q => q.Rows, static q => q.EnqueuedAt);
    private readonly Dictionary<(string Client, string Id), Queued> _byId = [];
    private readonly Dictionary<string, IAsyncStream<DeliveryBatch>> _streams = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _unreachableUntil = new(StringComparer.Ordinal);
    private readonly Queue<int> _recentBatchSizes = new();
    private BatcherKey _key;
    private ModelEntry? _model;
    private IInferenceModel? _instance;
    private DeviceWorker? _device;
    private ITimer? _wake;
    private ClusterLoad.LoadCell? _load;
    private DateTimeOffset _wakeAt = DateTimeOffset.MaxValue;

    // A lower bound on the earliest deadline in the queue (exact after each expiry scan), so that enqueues do not
    // scan the whole queue.
    private DateTimeOffset _earliestDeadline = DateTimeOffset.MaxValue;
    private int _running;

    // Batches dispatched whose results are not yet published; deactivation waits for them (_drained).
    private int _finishing;
    private long _reportedQueued;
    private long _reportedActive;
    private bool _draining;
    private TaskCompletionSource? _drained;
    private long _batchesRun;
    private long _itemsRun;
    private double _recentBatchMs;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _key = BatcherKey.Parse(this.GetPrimaryKeyString());
        _model = catalog.TryGet(_key.Model, out var model) ? model : null;
        // A batcher activated away from the silo its key names (that silo left the cluster) serves nothing: its device
        // is another silo's.
        _device = _key.Silo == SiloNames.ForKey(silo.Name) && devices.TryGet(_key.Device, out var device) ? device : null;
        _load = load.Register(this.GetPrimaryKeyString());
        if (_model is not null)
        {
            _queue = new LeveledQueue<Queued>(_model.Options.PriorityLevels, static q => q.Rows, static q => q.EnqueuedAt);
        }

        // A plain timer on the injected clock rather than a grain timer: it stays on the virtual clock in tests, and a
        // tick is one work item on this activation's scheduler, not a message.
        var scheduler = GrainContext.Scheduler;
        Action onWake = OnWake;
        _wake = time.CreateTimer(_ => scheduler.QueueAction(onWake), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        return Task.CompletedTask;
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _wake?.Dispose();
        _deactivating = true;
        load.Unregister(this.GetPrimaryKeyString(), _load!);
        GridMetrics.Depth(_key.Model, _key.Device, -_reportedQueued, -_reportedActive);
        (_reportedQueued, _reportedActive) = (0, 0);
        // Nothing accepted may be lost: whatever is still queued or generating ends with an error the client can act on,
        // and batches already on the device finish and publish their results before the activation goes (its silo
        // may be shutting down: a silo leaving the cluster drains its batchers).
        await EndUnstartedAsync($"the batcher of model '{_key.Model}' shut down ({reason.ReasonCode}).");
        if (_finishing > 0)
        {
            _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            try
            {
                await _drained.Task.WaitAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                LogDrainCut(logger, _key.Model, _finishing);
            }
        }
    }

    /// <summary>
    /// Ends what is queued, and unless <paramref name="queuedOnly"/> the sequences generating, with
    /// <see cref="ErrorCode.ModelUnavailable"/> and <paramref name="why"/>.
    /// </summary>
    private Task EndUnstartedAsync(string why, bool queuedOnly = false)
    {
        if (_queue.Count > 0 || (!queuedOnly && _sequences.Count > 0))
        {
            var error = new InferError(ErrorCode.ModelUnavailable, why, queuedOnly ? DrainRetryAfterMs : null);
            var ended = _queue.RemoveAll(static _ => true);
            foreach (var q in ended)
            {
                q.End();
            }

            if (!queuedOnly)
            {
                // Their caches (and versions) are not let go: a step may still be using them on the device thread.
                ended.AddRange(_sequences.Where(r => !r.Queued.Cancelled).Select(r => r.Queued));
                _sequences.Clear();
                _loop?.Stop();
                _loop = null;
            }

            foreach (var q in ended)
            {
                _byId.Remove((q.Item.ClientId, q.Item.Request.RequestId));
            }

            ReportDepth();

            // A generation's last token batches may still be on their way (retrying): its error end goes after them.
            return FinishAsync(ended.Select(q => ToDelivery(q, null, error)).ToList(), ended, afterEarlier: !queuedOnly);
        }

        return Task.CompletedTask;
    }

    public async Task DrainAsync(TimeSpan timeout)
    {
        // Sessions stop choosing this silo as soon as ClusterLoad.Draining is set (here at once, elsewhere within one
        // load refresh); what still arrives in between is refused, retryable.
        _draining = true;
        await EndUnstartedAsync($"silo '{_key.Silo}' is shutting down; retry (the other silos serve model '{_key.Model}').", queuedOnly: true);
        var giveUpAt = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (!Drained && Environment.TickCount64 < giveUpAt)
        {
            // Real time, not the injected clock, and a short poll rather than a signal: this runs once, at shutdown.
            await Task.Delay(10);
        }

        if (_sequences.Count > 0)
        {
            LogDrainTimedOut(logger, _key.Model, _sequences.Count, timeout);
            _deactivating = true;
            await EndUnstartedAsync($"silo '{_key.Silo}' shut down before this generation finished; retry.");
        }

        while (!Drained && Environment.TickCount64 < giveUpAt + (long)PublishRetryBudget.TotalMilliseconds)
        {
            await Task.Delay(10);
        }
    }

    /// <summary>Moves the queue-depth and active-sequence gauges by what changed since they were last moved.</summary>
    private void ReportDepth()
    {
        long queued = _queue.Count, active = _sequences.Count;
        if (queued != _reportedQueued || active != _reportedActive)
        {
            GridMetrics.Depth(_key.Model, _key.Device, queued - _reportedQueued, active - _reportedActive);
            (_reportedQueued, _reportedActive) = (queued, active);
        }
    }

    /// <summary>Nothing queued, generating, on the device or being delivered.</summary>
    private bool Drained => _queue.Count == 0 && _sequences.Count == 0 && _finishing == 0 && _publishing.Values.All(static t => t.IsCompleted);

    public Task<InferError?> EnqueueAsync(BatchItem item)
    {
        var refused = Enqueue(item);
        if (refused is not null)
        {
            GridMetrics.Refused(_key.Model, refused.Code);
        }

        return Task.FromResult(refused);
    }

    private InferError? Enqueue(BatchItem item)
    {
        if (_draining)
        {
            return new InferError(ErrorCode.ModelUnavailable, $"silo '{_key.Silo}' is shutting down; retry (the other silos serve model '{_key.Model}').", DrainRetryAfterMs);
        }

        // The catalog is an immutable snapshot: reading it per request is a dictionary lookup, and it sees a model
        // that became ready after this activation started, or a version a rollout committed (options included).
        ModelLease? lease = null;
        if (catalog.TryGet(_key.Model, out var entry) && entry.Leases.TryGetValue(_key.Device, out var current))
        {
            _model = entry;
            _instance = current.Model;
            lease = current;
        }

        if (_model is null || _device is null || _instance is null)
        {
            if (_key.Silo != SiloNames.ForKey(silo.Name))
            {
                // Placed away from the silo its key names (gone, or not yet seen by the silo that placed it): go once
                // idle, so that the next request places it afresh.
                DeactivateOnIdle();
            }

            var why = _model?.State == ModelState.Loading ? "is still loading" : $"is not served on device '{_key.Device}' of silo '{_key.Silo}'";
            return new InferError(ErrorCode.ModelUnavailable, $"model '{_key.Model}' {why}.");
        }

        var options = _model.Options;
        var priority = item.Request.Priority ?? options.DefaultPriority;
        if (priority < 0 || priority >= options.PriorityLevels)
        {
            return new InferError(ErrorCode.InvalidInput, $"priority {priority} is out of range: model '{_key.Model}' has levels 0 to {options.PriorityLevels - 1}.");
        }

        if (_instance is OnnxDecoderModel && _queue.Count >= options.QueueCapacity)
        {
            // Checked before the prompt is tokenized: a refusal under overload costs the scheduler nothing more.
            var retry = Math.Max(1, (int)Math.Ceiling(DecoderExpectedWaitMs(_queue.Count)));
            return new InferError(ErrorCode.Overloaded, $"model '{_key.Model}' has {_queue.Count} requests queued, its capacity; retry in {retry} ms.", retry);
        }

        DecodeSequence? sequence = null;
        int rows;
        if (_instance is OnnxDecoderModel decoder)
        {
            if (PrepareSequence(decoder, item, out sequence) is { } refused)
            {
                return refused;
            }

            rows = 1;
        }
        else
        {
            var check = _instance.Check(item.Request);
            if (check.Error is { } invalid)
            {
                return invalid;
            }

            rows = check.Rows;
        }

        if (_queue.Count >= options.QueueCapacity)
        {
            var retry = (int)Math.Ceiling(sequence is null ? ExpectedWaitMs(_queue.Rows) : DecoderExpectedWaitMs(_queue.Count));
            return new InferError(ErrorCode.Overloaded, $"model '{_key.Model}' has {_queue.Count} requests queued, its capacity; retry in {retry} ms.", Math.Max(1, retry));
        }

        // Global backpressure (DESIGN §4, ring 3): refuse at once what would miss its deadline in the queue anyway.
        var expected = sequence is null ? ExpectedWaitMs(_queue.RowsAtOrAbove(priority) + rows) : DecoderExpectedWaitMs(_queue.RowsAtOrAbove(priority));
        var remaining = (item.Deadline - time.GetUtcNow()).TotalMilliseconds;
        if (expected > remaining)
        {
            var retry = Math.Max(1, (int)Math.Ceiling(expected - remaining));
            return new InferError(ErrorCode.Overloaded, $"model '{_key.Model}' expects to take {expected:F0} ms to answer, more than the request's {Math.Max(0, remaining):F0} ms left; retry in {retry} ms.", retry);
        }

        // The request holds the version it was checked against until it ends (a rollout's old version drains).
        if (!lease!.TryAcquire())
        {
            // That version was released between the lookup and now: a commit swapped it out. The new one takes it.
            return Enqueue(item);
        }

        var queued = new Queued(item, time.GetTimestamp(), rows, lease) { Sequence = sequence };
        if (!_byId.TryAdd((item.ClientId, item.Request.RequestId), queued))
        {
            queued.End();
            return new InferError(ErrorCode.BadRequest, $"a request with id '{item.Request.RequestId}' is already queued.");
        }

        _queue.Add(queued, priority);
        if (item.Deadline < _earliestDeadline)
        {
            _earliestDeadline = item.Deadline;
        }

        Pump();
        return null;
    }

    public Task CancelAsync(string clientId, ImmutableArray<string> requestIds)
    {
        var dropQueued = false;
        foreach (var id in requestIds)
        {
            if (_byId.Remove((clientId, id), out var q))
            {
                // Counted here, once, whether it was queued or running: it leaves without a delivery.
                GridMetrics.Ended(_key.Model, q.Lease.Model.Version, _key.Device, ErrorCode.Cancelled.ToWire(), time.GetElapsedTime(q.EnqueuedAt).TotalSeconds);
                // A running one is only flagged: its batch-mates still need the batch, and its result is dropped.
                q.Cancelled = true;
                dropQueued |= !q.Running;
            }
        }

        if (_sequences.Count > 0)
        {
            FlagCancelledSequences();
        }

        if (dropQueued)
        {
            // One pass whatever the number of ids (a closing client cancels all of its requests at once).
            foreach (var q in _queue.RemoveAll(static q => q.Cancelled && !q.Running))
            {
                q.End();
            }
        }

        Pump();
        return Task.CompletedTask;
    }

    public Task<BatcherStatus> GetStatusAsync() => Task.FromResult(new BatcherStatus(
        _key.Model,
        SiloNames.ForKey(silo.Name),
        _key.Device,
        _queue.Count,
        _running + (_stepping ? 1 : 0),
        _batchesRun,
        _itemsRun,
        [.. _recentBatchSizes],
        ActiveSequences,
        [.. _byId.Values.Select(q => q.Lease.Model.Version).Append(_instance?.Version).OfType<string>().Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)]));

    private void OnWake()
    {
        _wakeAt = DateTimeOffset.MaxValue;
        Pump();
    }

    /// <summary>Expires what is past its deadline, dispatches every batch that is due, and arms the timer for the next event.</summary>
    private void Pump()
    {
        if (_model is null)
        {
            return;
        }

        var options = _model.Options;
        var now = time.GetUtcNow();
        ExpireQueued(now);
        if (_instance is OnnxDecoderModel decoder)
        {
            AdmitSequences(decoder);
            Volatile.Write(ref _load!.Rows, _queue.Rows);
            ReportDepth();
            ArmTimer(now);
            return;
        }

        while (_queue.Count > 0 && _running < options.MaxConcurrentBatches)
        {
            var oldestWaited = time.GetElapsedTime(_queue.OldestEnqueuedAt);
            if (_queue.Rows < options.MaxBatchSize && oldestWaited < options.MaxWait)
            {
                break;
            }

            var batch = _queue.TakeBatch(options.MaxBatchSize);
            var lease = batch[0].Lease;
            if (batch.TrueForAll(q => q.Lease == lease))
            {
                _running++;
                _ = RunBatchAsync(batch);
                continue;
            }

            // Requests checked against different versions (a rollout just committed) run as separate batches.
            foreach (var group in batch.GroupBy(q => q.Lease))
            {
                _running++;
                _ = RunBatchAsync(group.ToList());
            }
        }

        Volatile.Write(ref _load!.Rows, _queue.Rows);
        ReportDepth();
        ArmTimer(now);
    }

    private void ExpireQueued(DateTimeOffset now)
    {
        if (now < _earliestDeadline)
        {
            return;
        }

        List<Queued>? expired = null;
        _earliestDeadline = DateTimeOffset.MaxValue;
        foreach (var q in _queue.Items)
        {
            var deadline = q.Item.Deadline;
            if (deadline <= now)
            {
                (expired ??= []).Add(q);
            }
            else if (deadline < _earliestDeadline)
            {
                _earliestDeadline = deadline;
            }
        }

        if (expired is null)
        {
            return;
        }

        _queue.RemoveAll(q => q.Item.Deadline <= now);
        foreach (var q in expired)
        {
            q.End();
        }

        foreach (var q in expired)
        {
            _byId.Remove((q.Item.ClientId, q.Item.Request.RequestId));
        }

        var deliveries = expired.Select(q => ToDelivery(q, null, new InferError(
            ErrorCode.DeadlineExceeded,
            $"the deadline passed after {time.GetElapsedTime(q.EnqueuedAt).TotalMilliseconds:F0} ms in the queue of model '{_key.Model}'."))).ToList();
        _ = FinishAsync(deliveries, expired);
    }

    private void ArmTimer(DateTimeOffset now)
    {
        if (_queue.Count == 0 || _wake is null)
        {
            return;
        }

        // The next event is the earliest of: the oldest request's MaxWait running out (only matters while the device
        // has room) and the earliest deadline in the queue.
        var next = DateTimeOffset.MaxValue;
        // A decoder's queue waits for free slots, not for batch-mates: only deadlines wake it.
        if (_running < _model!.Options.MaxConcurrentBatches && _instance is not OnnxDecoderModel)
        {
            var waited = time.GetElapsedTime(_queue.OldestEnqueuedAt);
            next = now + (_model.Options.MaxWait - waited);
        }

        if (_earliestDeadline < next)
        {
            next = _earliestDeadline;
        }

        if (next == DateTimeOffset.MaxValue || next >= _wakeAt)
        {
            return;
        }

        _wakeAt = next;
        var due = next - now;
        _wake.Change(due > TimeSpan.Zero ? due : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
    }

    private async Task RunBatchAsync(List<Queued> batch)
    {
        _finishing++;
        try
        {
            await RunAndPublishAsync(batch);
        }
        finally
        {
            if (--_finishing == 0)
            {
                _drained?.TrySetResult();
            }
        }
    }

    private async Task RunAndPublishAsync(List<Queued> batch)
    {
        var requests = new InferRequest[batch.Count];
        var rows = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            batch[i].Running = true;
            requests[i] = batch[i].Item.Request;
            rows += batch[i].Rows;
        }

        var model = (IBatchModel)batch[0].Lease.Model;

        var started = time.GetTimestamp();
        IReadOnlyList<ItemOutcome>? outcomes = null;
        InferError? failure = null;
        try
        {
            outcomes = await _device!.RunAsync(() => model.Run(requests));
            if (outcomes.Count != batch.Count)
            {
                throw new InvalidOperationException($"the model returned {outcomes.Count} outcomes for a batch of {batch.Count}.");
            }
        }
        catch (Exception ex)
        {
            LogBatchFailed(logger, ex, _key.Model, batch.Count);
            failure = new InferError(ErrorCode.Internal, $"model '{_key.Model}' failed on a batch of {batch.Count}: {ex.GetType().Name}.");
        }

        var computeMs = time.GetElapsedTime(started).TotalMilliseconds;
        _running--;
        _batchesRun++;
        GridMetrics.Batch(_key.Model, model.Version, _key.Device, batch.Count);
        _itemsRun += batch.Count;
        // Admission's estimate of a batch's time; it assumes full batches, so it errs towards admitting.
        _recentBatchMs = _batchesRun == 1 ? computeMs : (0.8 * _recentBatchMs) + (0.2 * computeMs);
        if (_recentBatchSizes.Count == RecentBatchWindow)
        {
            _recentBatchSizes.Dequeue();
        }

        _recentBatchSizes.Enqueue(rows);

        var deliveries = new List<Delivery>(batch.Count);
        var ended = new List<Queued>(batch.Count);
        for (var i = 0; i < batch.Count; i++)
        {
            var q = batch[i];
            // The batch has run: its requests, cancelled ones too, let go of the version it ran on.
            q.End();
            if (q.Cancelled)
            {
                continue;
            }

            _byId.Remove((q.Item.ClientId, q.Item.Request.RequestId));
            ended.Add(q);
            var outcome = failure is null ? outcomes?[i] : null;
            var timing = new Timing(
                time.GetElapsedTime(q.EnqueuedAt, started).TotalMilliseconds,
                computeMs,
                rows);
            deliveries.Add(outcome is { Error: null, Outputs.IsDefault: false } ok
                ? ToDelivery(q, new InferResult(_key.Model, model.Version, ok.Outputs, timing), null)
                : ToDelivery(q, null, outcome?.Error ?? failure));
        }

        Pump();
        await FinishAsync(deliveries, ended);
    }

    /// <summary>Publishes the deliveries, one event per destination frontend, and tells each session which of its requests
    /// ended. With <paramref name="afterEarlier"/>, each destination's event goes out only after the events already on
    /// their way to it (a generation's token batches, which its end must not overtake).</summary>
    private async Task FinishAsync(List<Delivery> deliveries, List<Queued> ended, bool afterEarlier = false)
    {
        var producedAt = time.GetUtcNow();
        if (deliveries.Count == 0)
        {
            return;
        }

        // Results are about to be published: wake idling timers so the stream's pulling agent polls promptly.
        activity.NotifyActivity();
        for (var i = 0; i < deliveries.Count; i++)
        {
            var (delivery, q) = (deliveries[i], ended[i]);
            var version = q.Lease.Model.Version;
            GridMetrics.Ended(_key.Model, version, _key.Device, delivery.Error?.Code.ToWire() ?? GridMetrics.Ok, time.GetElapsedTime(q.EnqueuedAt).TotalSeconds);
            if (delivery.Result is { } result)
            {
                GridMetrics.Queued(_key.Model, version, _key.Device, result.Timing.QueueMs / 1000, result.Timing.ComputeMs / 1000);
            }
        }

        var work = new List<Task>();
        foreach (var group in deliveries.Zip(ended).GroupBy(p => p.Second.Item.Request.ReplyTo))
        {
            var batch = new DeliveryBatch([.. group.Select(p => p.First)], producedAt);
            var observer = group.First().Second.Item.Request.ReplyObserver;
            work.Add(afterEarlier ? PublishInOrder(group.Key, observer, batch) : PublishAsync(group.Key, observer, batch));
        }

        foreach (var group in ended.GroupBy(q => q.Item.ClientId))
        {
            work.Add(NotifySessionAsync(group.Key, [.. group.Select(q => q.Item.Request.RequestId)]));
        }

        await Task.WhenAll(work);
    }

    /// <summary>
    /// Hands one destination's deliveries over: by calling its observer when the requests name one (D9), else by
    /// publishing to its delivery stream. Retried on failure for <see cref="PublishRetryBudget"/>: an observer call fails
    /// while the frontend's gateway silo dies and the frontend reconnects through another; a stream queue whose silo
    /// just died refuses until membership declares the death and the queue moves. The frontend drops duplicates.
    /// </summary>
    private async Task PublishAsync(string replyTo, IDeliveryObserver? observer, DeliveryBatch batch)
    {
        IAsyncStream<DeliveryBatch>? stream = null;
        if (observer is null && !_streams.TryGetValue(replyTo, out stream))
        {
            stream = this.GetStreamProvider(DeliveryStreams.ProviderName)
                .GetStream<DeliveryBatch>(StreamId.Create(DeliveryStreams.Namespace, replyTo));
            _streams[replyTo] = stream;
        }

        if (_unreachableUntil.TryGetValue(replyTo, out var until))
        {
            if (Environment.TickCount64 < until)
            {
                // Its last delivery failed after every retry: the frontend is gone (its clients with it). Failing at
                // once keeps a decoder's chain of steps to it from growing by a retry budget per step.
                return;
            }

            _unreachableUntil.Remove(replyTo);
        }

        var delay = PublishRetryFirst;
        var giveUpAt = Environment.TickCount64 + (long)PublishRetryBudget.TotalMilliseconds;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await (observer is not null ? observer.DeliverAsync(batch) : stream!.OnNextAsync(batch));
                return;
            }
            catch (Exception ex) when (attempt < PublishMinAttempts || Environment.TickCount64 < giveUpAt)
            {
                LogPublishRetry(logger, replyTo, attempt, ex.Message);
            }
            catch (Exception ex)
            {
                // The frontend's own deadline watchdog ends these requests for its clients.
                LogPublishFailed(logger, ex, replyTo, batch.Items.Length, attempt);
                _unreachableUntil[replyTo] = Environment.TickCount64 + (long)UnreachableFor.TotalMilliseconds;
                return;
            }

            // Real time, not the injected clock: under a test's virtual clock the retry must still happen.
            await Task.Delay(delay);
            delay = delay * 2 < PublishRetryMax ? delay * 2 : PublishRetryMax;
        }
    }

    private async Task NotifySessionAsync(string clientId, ImmutableArray<string> ids)
    {
        try
        {
            await GrainFactory.GetGrain<IClientSessionGrain>(clientId).CompletedAsync(ids);
        }
        catch (Exception ex)
        {
            LogNotifyFailed(logger, ex, clientId);
        }
    }

    /// <summary>
    /// How long until <paramref name="rows"/> queued rows (those ahead of a request, and its own) have run: the batches
    /// they fill plus those on the device, at the recent time per batch (the warm-up's until batches have run).
    /// </summary>
    private double ExpectedWaitMs(long rows)
    {
        var options = _model!.Options;
        var perBatch = _batchesRun > 0 ? _recentBatchMs : _instance?.WarmBatchMs ?? 0;
        var batches = Math.Ceiling((double)rows / options.MaxBatchSize) + _running;
        return batches * perBatch / options.MaxConcurrentBatches;
    }

    private static Delivery ToDelivery(Queued q, InferResult? result, InferError? error)
        => new(q.Item.ClientId, q.Item.Request.RequestId, result, result is null ? error ?? new InferError(ErrorCode.Internal, "no outcome.") : null);

    private sealed class Queued(BatchItem item, long enqueuedAt, int rows, ModelLease lease)
    {
        private int _ended;

        public BatchItem Item { get; } = item;

        /// <summary>The model version the request was checked against and runs on.</summary>
        public ModelLease Lease { get; } = lease;

        /// <summary>Lets go of the request's model version; once, whichever way the request ended.</summary>
        public void End()
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0)
            {
                Lease.Release();
            }
        }


        public long EnqueuedAt { get; } = enqueuedAt;

        public int Rows { get; } = rows;

        public bool Running { get; set; }

        /// <summary>A decoder's sequence, prepared (prompt tokenized) at admission.</summary>
        public DecodeSequence? Sequence { get; init; }

        public bool Cancelled { get; set; }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Model} failed on a batch of {Count}")]
    private static partial void LogBatchFailed(ILogger logger, Exception ex, string model, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The batcher of model {Model} deactivated with {Count} batches still running: their requests end at their frontends' watchdogs")]
    private static partial void LogDrainCut(ILogger logger, string model, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The batcher of model {Model} still had {Count} sequences generating when its silo's drain timeout ({Timeout}) passed: they end with model_unavailable")]
    private static partial void LogDrainTimedOut(ILogger logger, string model, int count, TimeSpan timeout);

    [LoggerMessage(Level = LogLevel.Information, Message = "Publishing to frontend {Frontend} failed (attempt {Attempt}): {Reason}; retrying")]
    private static partial void LogPublishRetry(ILogger logger, string frontend, int attempt, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Publishing {Count} deliveries to frontend {Frontend} failed after {Attempt} attempts")]
    private static partial void LogPublishFailed(ILogger logger, Exception ex, string frontend, int count, int attempt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Telling session {ClientId} of completions failed")]
    private static partial void LogNotifyFailed(ILogger logger, Exception ex, string clientId);
}
