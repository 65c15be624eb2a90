using System.Collections.Immutable;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using StreamInfer.Grains.Clocks;
using StreamInfer.Grains.Deliveries;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Metrics;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Placement;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// The batcher of one model on one device of one silo. A request is admitted (<see cref="AdmissionPolicy"/>) into the
/// queue (<see cref="RequestQueue"/>), run on the device by the model's scheduler (<see cref="IBatchScheduler"/>: dynamic
/// batching, or continuous batching for a decoder), and what it produced goes to the frontends through the outbox
/// (<see cref="DeliveryOutbox"/>). The grain holds the timer, expires queued requests at their deadline, and drains. It
/// is reentrant so that enqueues keep flowing while work is on the device; every method body is synchronous up to its
/// first await.
/// </summary>
[Reentrant]
[SiloKeyPlacement]
internal sealed partial class BatcherGrain(
    ModelCatalog catalog,
    DeviceRegistry devices,
    ClusterLoad load,
    IActivitySignal activity,
    ILocalSiloDetails silo,
    IDeliveryPublisher publisher,
    GridMetrics metrics,
    [FromKeyedServices(StreamInferClock.Key)] TimeProvider time,
    ILogger<BatcherGrain> logger) : Grain, IBatcherGrain, ISchedulerHost
{
    private static readonly TimeSpan KeepAliveWhileDecoding = TimeSpan.FromMinutes(5);

    // Within one load refresh (250 ms by default) every silo has stopped choosing a draining one.
    private const int DrainRetryAfterMs = 250;

    // A model still loading, or a batcher whose silo has left (sessions stop picking it once membership declares it).
    private const int PlacedAwayRetryAfterMs = 1000;

    private BatcherKey _key;
    private ModelEntry? _model;
    private IInferenceModel? _instance;
    private DeviceWorker? _device;
    private RequestQueue _queue = new(1);
    private IBatchScheduler? _scheduler;
    private AdmissionPolicy? _admission;
    private DeliveryOutbox? _outbox;
    private Handover? _handover;
    private ITimer? _wake;
    private ClusterLoad.LoadCell? _load;
    private DateTimeOffset _wakeAt = DateTimeOffset.MaxValue;
    private long _reportedQueued;
    private long _reportedActive;
    private bool _draining;

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
            _queue = new RequestQueue(_model.Options.PriorityLevels);
        }

        // Retries wait in real time: under a test's virtual clock a refused delivery must still be retried.
        _outbox = new DeliveryOutbox(publisher, DeliveryRetry.Default, TimeProvider.System, logger);
        _handover = new Handover(_key, _queue, _outbox, activity, GrainFactory, metrics, time, logger);

        // A plain timer on the injected clock rather than a grain timer: it stays on the virtual clock in tests, and a
        // tick is one work item on this activation's scheduler, not a message.
        var scheduler = GrainContext.Scheduler;
        Action onWake = OnWake;
        _wake = time.CreateTimer(_ => scheduler.QueueAction(onWake), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        return Task.CompletedTask;
    }

    public async Task<InferError?> EnqueueAsync(BatchItem item)
    {
        // A check that may take long (a decoder tokenizing a prompt) runs on the thread pool, so that this batcher's
        // admissions and steps never wait behind it; the rest of the admission runs here, once it is done.
        var ahead = !_draining && Serving() is { } lease && _scheduler!.ChecksOffScheduler && _admission!.PassesPrecheck(item, _model!.Options)
            ? await _admission.CheckAheadAsync(lease.Model, item)
            : null;
        var refused = Enqueue(item, ahead);
        if (refused is not null)
        {
            metrics.Refused(_key.Model, refused.Code);
        }

        return refused;
    }

    private InferError? Enqueue(BatchItem item, CheckedAhead? ahead)
    {
        if (_draining)
        {
            return new InferError(ErrorCode.ModelUnavailable, $"silo '{_key.Silo}' is shutting down; retry (the other silos serve model '{_key.Model}').", DrainRetryAfterMs);
        }

        while (true)
        {
            if (Serving() is not { } lease)
            {
                var placedAway = _key.Silo != SiloNames.ForKey(silo.Name);
                if (placedAway)
                {
                    // Placed away from the silo its key names (gone, or not yet seen by the silo that placed it): go once
                    // idle, so that the next request places it afresh.
                    DeactivateOnIdle();
                }

                var loading = _model?.State == ModelState.Loading;
                var why = loading ? "is still loading" : $"is not served on device '{_key.Device}' of silo '{_key.Silo}'";
                // Both pass within a second or so: a load finishes, and a session stops picking a silo that has left once
                // membership says so. Anything else (a model not on this device) has no retry hint.
                return new InferError(ErrorCode.ModelUnavailable, $"model '{_key.Model}' {why}.", loading || placedAway ? PlacedAwayRetryAfterMs : null);
            }

            var refused = _admission!.Admit(item, lease, _model!.Options, out var stale, ahead);
            if (!stale)
            {
                if (refused is null)
                {
                    Pump();
                }

                return refused;
            }

            // That version was released between the lookup and now: a commit swapped it out. The new one takes it.
        }
    }

    /// <summary>
    /// The serving version on this batcher's device, read from the catalog per request (an immutable snapshot: it sees a
    /// model that became ready after this activation started, or a version a rollout committed, options included);
    /// null when none serves here. The first one chooses the scheduler.
    /// </summary>
    private ModelLease? Serving()
    {
        if (!catalog.TryGet(_key.Model, out var entry))
        {
            return null;
        }

        _model = entry;
        if (_device is null || !entry.Leases.TryGetValue(_key.Device, out var lease))
        {
            return null;
        }

        _instance = lease.Model;
        if (_scheduler is null)
        {
            var context = new BatcherContext(_key, _queue, _device, time, this, metrics, logger);
            _scheduler = BatchSchedulers.For(lease.Model, entry.Options, context);
            if (_scheduler is null)
            {
                return null;
            }

            _admission = new AdmissionPolicy(_key.Model, _queue, _scheduler, time);
        }

        _scheduler.Serve(entry.Options, lease.Model);
        return lease;
    }

    public Task EndSequencesAsync(string clientId, ImmutableArray<string> sequenceIds)
    {
        _scheduler?.EndSequences(clientId, sequenceIds);
        Pump();
        return Task.CompletedTask;
    }

    public Task CancelAsync(string clientId, ImmutableArray<string> requestIds)
    {
        var dropQueued = false;
        var flagRunning = false;
        foreach (var id in requestIds)
        {
            if (_queue.TryForget((clientId, id), out var q))
            {
                // Counted here, once, whether it was queued or running: it leaves without a delivery.
                metrics.Ended(_key.Model, q.Lease.Model.Version, _key.Device, ErrorCode.Cancelled.ToWire(), time.GetElapsedTime(q.EnqueuedAt).TotalSeconds);
                q.Cancelled = true;
                dropQueued |= !q.Running;
                flagRunning |= q.Running;
            }
        }

        if (flagRunning)
        {
            _scheduler?.Cancelled();
        }

        if (dropQueued)
        {
            // One pass whatever the number of ids (a closing client cancels all of its requests at once).
            foreach (var q in _queue.RemoveCancelled())
            {
                q.End();
            }
        }

        Pump();
        return Task.CompletedTask;
    }

    public Task<BatcherStatus> GetStatusAsync()
    {
        var stats = _scheduler?.Stats ?? new BatchStats();
        return Task.FromResult(new BatcherStatus(
            _key.Model,
            SiloNames.ForKey(silo.Name),
            _key.Device,
            _queue.Count,
            _scheduler?.Running ?? 0,
            stats.BatchesRun,
            stats.ItemsRun,
            [.. stats.RecentSizes],
            _scheduler?.Active ?? 0,
            [.. _queue.Held.Select(q => q.Lease.Model.Version).Append(_instance?.Version).OfType<string>().Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)],
            _scheduler?.Held ?? 0));
    }
}
