using StreamInfer.Grains.Deliveries;

namespace StreamInfer.Grains.Batching;

/// <summary>How a batcher ends: a silo's drain, and its deactivation, each ending what has not started with an error
/// the client can act on and letting what runs finish.</summary>
internal sealed partial class BatcherGrain
{
    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _wake?.Dispose();
        load.Unregister(this.GetPrimaryKeyString(), _load!);
        metrics.Depth(_key.Model, _key.Device, -_reportedQueued, -_reportedActive);
        (_reportedQueued, _reportedActive) = (0, 0);
        // Nothing accepted may be lost: whatever is still queued or generating ends with an error the client can act on,
        // and batches already on the device finish and hand their results over before the activation goes (its silo
        // may be shutting down: a silo leaving the cluster drains its batchers).
        await EndUnstartedAsync($"the batcher of model '{_key.Model}' shut down ({reason.ReasonCode}).");
        if (_scheduler is { Idle: false } running)
        {
            try
            {
                await running.WhenIdleAsync().WaitAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                LogDrainCut(logger, _key.Model, running.Running);
            }
        }
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

        if (_scheduler is { Active: > 0 } generating)
        {
            LogDrainTimedOut(logger, _key.Model, generating.Active, timeout);
            await EndUnstartedAsync($"silo '{_key.Silo}' shut down before this generation finished; retry.");
        }

        while (!Drained && Environment.TickCount64 < giveUpAt + (long)DeliveryRetry.Default.Budget.TotalMilliseconds)
        {
            await Task.Delay(10);
        }
    }

    /// <summary>Nothing queued, generating, on the device or being delivered.</summary>
    private bool Drained => _queue.Count == 0 && (_scheduler?.Idle ?? true) && _outbox!.Idle;

    /// <summary>
    /// Ends what is queued, and unless <paramref name="queuedOnly"/> the sequences generating, with
    /// <see cref="ErrorCode.ModelUnavailable"/> and <paramref name="why"/>.
    /// </summary>
    private Task EndUnstartedAsync(string why, bool queuedOnly = false)
    {
        var error = new InferError(ErrorCode.ModelUnavailable, why, queuedOnly ? DrainRetryAfterMs : null);
        var ended = _queue.TakeAll();
        foreach (var q in ended)
        {
            q.End();
        }

        if (!queuedOnly && _scheduler is not null)
        {
            ended.AddRange(_scheduler.Abort());
        }

        if (ended.Count == 0)
        {
            return Task.CompletedTask;
        }

        // A generation's last token batches may still be on their way (retrying): its error end goes after them.
        return Finish([.. ended.Select(q => Ended(q, error))], time.GetUtcNow(), ordered: !queuedOnly);
    }
}
