namespace StreamInfer.Grains.Batching;

/// <summary>The batcher's clock: each pump expires what is past its deadline, has the scheduler start what is due, and
/// arms the timer for the next event; and the one way out, through the handover, with the depth gauges moved.</summary>
internal sealed partial class BatcherGrain
{
    private void OnWake()
    {
        _wakeAt = DateTimeOffset.MaxValue;
        Pump();
    }

    /// <summary>Expires what is past its deadline, has the scheduler start what is due, and arms the timer for the next
    /// event.</summary>
    public void Pump()
    {
        if (_scheduler is null)
        {
            return;
        }

        var now = time.GetUtcNow();
        ExpireQueued(now);
        var due = _scheduler.Dispatch(now);
        Volatile.Write(ref _load!.Rows, _queue.Rows);
        ReportDepth();
        ArmTimer(now, due);
    }

    void ISchedulerHost.KeepAlive() => DelayDeactivation(KeepAliveWhileDecoding);

    private void ExpireQueued(DateTimeOffset now)
    {
        if (_queue.Expire(now) is not { } expired)
        {
            return;
        }

        var outcomes = new List<RequestOutcome>(expired.Count);
        foreach (var q in expired)
        {
            q.End();
            outcomes.Add(Ended(q, new InferError(
                ErrorCode.DeadlineExceeded,
                $"the deadline passed after {time.GetElapsedTime(q.EnqueuedAt).TotalMilliseconds:F0} ms in the queue of model '{_key.Model}'.")));
        }

        _ = Finish(outcomes, time.GetUtcNow(), ordered: false);
    }

    /// <summary>Wakes at the earlier of the scheduler's next due time (a stateful sequence's expiry, say, with nothing
    /// queued) and the earliest queued deadline.</summary>
    private void ArmTimer(DateTimeOffset now, DateTimeOffset due)
    {
        if ((_queue.Count == 0 && due == DateTimeOffset.MaxValue) || _wake is null)
        {
            return;
        }

        var next = _queue.Count > 0 && _queue.EarliestDeadline < due ? _queue.EarliestDeadline : due;
        if (next == DateTimeOffset.MaxValue || next >= _wakeAt)
        {
            return;
        }

        _wakeAt = next;
        var wait = next - now;
        _wake.Change(wait > TimeSpan.Zero ? wait : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The one way out of the batcher (<see cref="Handover"/>).</summary>
    public Task Finish(IReadOnlyList<RequestOutcome> outcomes, DateTimeOffset producedAt, bool ordered)
    {
        var finished = _handover!.Finish(outcomes, producedAt, ordered);
        ReportDepth();
        return finished;
    }

    /// <summary>Moves the queue-depth and active-sequence gauges by what changed since they were last moved.</summary>
    private void ReportDepth()
    {
        long queued = _queue.Count, active = _scheduler?.Active ?? 0;
        if (queued != _reportedQueued || active != _reportedActive)
        {
            metrics.Depth(_key.Model, _key.Device, queued - _reportedQueued, active - _reportedActive);
            (_reportedQueued, _reportedActive) = (queued, active);
        }
    }

    private static RequestOutcome Ended(QueuedRequest q, InferError error)
        => new(q, new Delivery(q.Item.ClientId, q.Item.Request.RequestId, null, error));
}
