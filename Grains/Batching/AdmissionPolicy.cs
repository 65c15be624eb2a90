using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// Whether a batcher takes a request: its priority is one of the model's levels, the queue has room, the model takes
/// it, and the expected wait fits in what is left of its deadline (refused at once, with a <c>retry_after_ms</c>, when
/// it would miss it in the queue anyway). An accepted request holds the version it was checked against until it ends.
/// Load is refused only at a stateful sequence's start: a later request of a held sequence is always queued, since
/// refusing it would leave a gap in the sequence's state while the session goes on with its next one; those requests
/// are bounded by the requests one sequence may queue times max_sequences.
/// </summary>
internal sealed class AdmissionPolicy(string model, RequestQueue queue, IBatchScheduler scheduler, TimeProvider time)
{
    // Requests whose check runs on the thread pool: each holds a place in the queue's capacity meanwhile.
    private int _checking;

    /// <summary>
    /// Decides on <paramref name="item"/> against <paramref name="lease"/>, the serving version, and queues it when
    /// accepted; <paramref name="ahead"/>, when it was made against that version, is the scheduler's check, already run.
    /// Returns the refusal, or null when queued; <paramref name="stale"/> when the lease was released meanwhile (a rollout
    /// committed): the caller looks the serving version up again.
    /// </summary>
    public InferError? Admit(BatchItem item, ModelLease lease, ModelOptions options, out bool stale, CheckedAhead? ahead = null)
    {
        stale = false;
        if (Precheck(item, options) is { } refused)
        {
            return refused;
        }

        var priority = item.Request.Priority ?? options.DefaultPriority;
        var held = item.Request.Sequence is { Start: false };
        var check = ahead is not null && ReferenceEquals(ahead.Model, lease.Model) ? ahead.Check : scheduler.Check(lease.Model, item);
        if (check.Error is { } invalid)
        {
            return invalid;
        }

        // An idle batcher runs the request at once: there is nothing to wait behind, and refusing it on the recent batch
        // time alone would keep a time inflated by one slow batch (a starved machine, a pause) from ever being renewed.
        var idle = queue.Count == 0 && scheduler.Running == 0;
        var expected = scheduler.ExpectedWaitMs(queue.RowsAtOrAbove(priority), check.Rows);
        var remaining = (item.Deadline - time.GetUtcNow()).TotalMilliseconds;
        if (!held && expected > remaining && (!idle || remaining <= 0))
        {
            var retry = RetryAfterMs(expected - remaining);
            return new InferError(ErrorCode.Overloaded, $"model '{model}' expects to take {expected:F0} ms to answer, more than the request's {Math.Max(0, remaining):F0} ms left; retry in {retry} ms.", retry);
        }

        // A stateful sequence's request runs on the version its sequence started on, which its sequence holds.
        var runOn = check.Lease ?? lease;
        if (!runOn.TryAcquire())
        {
            if (check.Lease is not null)
            {
                // The sequence's own version is gone (its last hold dropped): looking the serving version up again
                // would only find the same sequence, and the same released version.
                return new InferError(ErrorCode.UnknownSequence, $"sequence '{item.Request.Sequence?.Id}' of model '{model}' lost the version it ran on; start it again with sequence_start.");
            }

            stale = true;
            return null;
        }

        var queued = new QueuedRequest(item, priority, time.GetTimestamp(), check.Rows, runOn, check.Sequence);
        if (!queue.TryAdd(queued))
        {
            queued.End();
            return new InferError(ErrorCode.BadRequest, $"a request with id '{item.Request.RequestId}' is already queued.");
        }

        scheduler.Admitted(queued);
        return null;
    }

    /// <summary>Whether <paramref name="item"/> passes the checks that come before the scheduler's own (which may then
    /// run ahead, off the grain's scheduler).</summary>
    public bool PassesPrecheck(BatchItem item, ModelOptions options) => Precheck(item, options) is null;

    /// <summary>Runs the scheduler's check of <paramref name="item"/> against <paramref name="model"/> on the thread pool,
    /// for <see cref="Admit"/>; the request holds a place in the queue's capacity while it runs.</summary>
    public async Task<CheckedAhead> CheckAheadAsync(IInferenceModel model, BatchItem item)
    {
        _checking++;
        try
        {
            return new CheckedAhead(model, await Task.Run(() => scheduler.Check(model, item)));
        }
        finally
        {
            _checking--;
        }
    }

    /// <summary>The checks before the scheduler's: a delivery observer, a priority among the model's levels, room in the
    /// queue (before the model's check, which may tokenize a prompt: a refusal under overload costs nothing more).</summary>
    private InferError? Precheck(BatchItem item, ModelOptions options)
    {
        if (item.Request.ReplyObserver is null)
        {
            return new InferError(ErrorCode.Internal, $"request '{item.Request.RequestId}' names no delivery observer: its answer could not be delivered.");
        }

        var priority = item.Request.Priority ?? options.DefaultPriority;
        if (priority < 0 || priority >= options.PriorityLevels || priority >= queue.Levels)
        {
            return new InferError(ErrorCode.InvalidInput, $"priority {priority} is out of range: model '{model}' has levels 0 to {Math.Min(options.PriorityLevels, queue.Levels) - 1}.");
        }

        var held = item.Request.Sequence is { Start: false };
        if (!held && queue.Count + _checking >= options.QueueCapacity)
        {
            var retry = RetryAfterMs(scheduler.ExpectedWaitMs(queue.Rows, 0));
            return new InferError(ErrorCode.Overloaded, $"model '{model}' has {queue.Count + _checking} requests queued, its capacity; retry in {retry} ms.", retry);
        }

        return null;
    }

    private static int RetryAfterMs(double ms) => Math.Max(1, (int)Math.Ceiling(ms));
}

/// <summary>A scheduler's check of a request, run ahead against <paramref name="Model"/>.</summary>
internal sealed record CheckedAhead(IInferenceModel Model, SchedulerCheck Check);
