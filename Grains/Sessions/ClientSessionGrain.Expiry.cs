namespace StreamInfer.Grains.Sessions;

/// <summary>
/// The deadlines of the requests waiting in the session behind their sequence's running one: one timer, armed for the
/// earliest, ends each at its deadline.
/// </summary>
internal sealed partial class ClientSessionGrain
{
    private ITimer? _expiry;
    private DateTimeOffset _expiryAt = DateTimeOffset.MaxValue;

    /// <summary>Has the expiry timer fire by <paramref name="at"/>: a waiting request ends at its deadline.</summary>
    private void ArmExpiry(DateTimeOffset at)
    {
        if (at >= _expiryAt)
        {
            return;
        }

        _expiryAt = at;
        if (_expiry is null)
        {
            // On the injected clock (a test's virtual one too); a tick is one work item on this activation's scheduler.
            var scheduler = GrainContext.Scheduler;
            Action tick = ExpireHeld;
            _expiry = time.CreateTimer(_ => scheduler.QueueAction(tick), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }

        var due = at - time.GetUtcNow();
        _expiry.Change(due > TimeSpan.Zero ? due : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
    }

    private void ExpireHeld()
    {
        _expiryAt = DateTimeOffset.MaxValue;
        if (_closed)
        {
            return;
        }

        var now = time.GetUtcNow();
        var next = DateTimeOffset.MaxValue;
        foreach (var pending in _backlog.Entries.Values.Where(p => p.Held).ToList())
        {
            if (pending.Deadline <= now)
            {
                Fail(pending, new InferError(ErrorCode.DeadlineExceeded, "the deadline passed while the request waited for the previous request of its sequence to finish."));
            }
            else if (pending.Deadline < next)
            {
                next = pending.Deadline;
            }
        }

        if (next != DateTimeOffset.MaxValue)
        {
            ArmExpiry(next);
        }
    }
}
