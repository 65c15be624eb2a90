namespace StreamInfer.Grains.Batching;

/// <summary>
/// The requests a batcher holds: those waiting, in a <see cref="LeveledQueue{T}"/> by priority, and every one it has
/// accepted and not yet ended (waiting or running) by its client's id, so that a cancel finds it. Also keeps the earliest
/// deadline among the waiting ones, so that expiring them is a scan only when one is due.
/// </summary>
internal sealed class RequestQueue(int levels)
{
    private readonly LeveledQueue<QueuedRequest> _waiting = new(levels, static q => q.Rows, static q => q.EnqueuedAt);
    private readonly Dictionary<(string Client, string Id), QueuedRequest> _byId = [];

    /// <summary>Priority levels.</summary>
    public int Levels => _waiting.Levels;

    /// <summary>Requests waiting.</summary>
    public int Count => _waiting.Count;

    /// <summary>Rows waiting.</summary>
    public long Rows => _waiting.Rows;

    /// <summary>The enqueue timestamp of the oldest waiting request, or <see cref="long.MaxValue"/> when none waits.</summary>
    public long OldestEnqueuedAt => _waiting.OldestEnqueuedAt;

    /// <summary>A lower bound on the earliest deadline among the waiting requests (exact after <see cref="Expire"/>).</summary>
    public DateTimeOffset EarliestDeadline { get; private set; } = DateTimeOffset.MaxValue;

    /// <summary>Every request accepted and not yet ended.</summary>
    public IEnumerable<QueuedRequest> Held => _byId.Values;

    /// <summary>Rows that would be taken before a new request of <paramref name="priority"/>.</summary>
    public long RowsAtOrAbove(int priority) => _waiting.RowsAtOrAbove(priority);

    /// <summary>Queues <paramref name="q"/>, unless its client already has a request of that id here.</summary>
    public bool TryAdd(QueuedRequest q)
    {
        if (!_byId.TryAdd(q.Key, q))
        {
            return false;
        }

        _waiting.Add(q, q.Priority);
        if (q.Item.Deadline < EarliestDeadline)
        {
            EarliestDeadline = q.Item.Deadline;
        }

        return true;
    }

    /// <summary>The request next in line (highest priority, oldest), or false when none waits.</summary>
    public bool TryPeek(out QueuedRequest q) => _waiting.TryPeek(out q);

    /// <summary>Takes the next batch of at most <paramref name="maxRows"/> rows (see <see cref="LeveledQueue{T}.TakeBatch"/>).</summary>
    public List<QueuedRequest> TakeBatch(int maxRows) => _waiting.TakeBatch(maxRows);

    /// <summary>Takes the next batch among the requests <paramref name="choose"/> lets go (see <see cref="LeveledQueue{T}.TakeWhere"/>).</summary>
    public List<QueuedRequest> TakeWhere(int maxRows, Func<QueuedRequest, QueueChoice> choose, List<QueuedRequest> dropped)
        => _waiting.TakeWhere(maxRows, choose, dropped);

    /// <summary>Forgets a cancelled request by its key; it stays queued until <see cref="RemoveCancelled"/>.</summary>
    public bool TryForget((string Client, string Id) key, out QueuedRequest q) => _byId.Remove(key, out q!);

    /// <summary>Forgets a request that ended, unless its id has meanwhile been taken by a newer request.</summary>
    public void Forget(QueuedRequest q)
    {
        if (_byId.TryGetValue(q.Key, out var current) && current == q)
        {
            _byId.Remove(q.Key);
        }
    }

    /// <summary>Removes the cancelled requests that still wait; returns them.</summary>
    public List<QueuedRequest> RemoveCancelled() => _waiting.RemoveAll(static q => q.Cancelled && !q.Running);

    /// <summary>Removes every waiting request; returns them.</summary>
    public List<QueuedRequest> TakeAll() => _waiting.RemoveAll(static _ => true);

    /// <summary>Removes and returns the waiting requests whose deadline is <paramref name="now"/> or earlier.</summary>
    public List<QueuedRequest>? Expire(DateTimeOffset now)
    {
        if (now < EarliestDeadline)
        {
            return null;
        }

        var earliest = DateTimeOffset.MaxValue;
        var due = false;
        foreach (var q in _waiting.Items)
        {
            if (q.Item.Deadline <= now)
            {
                due = true;
            }
            else if (q.Item.Deadline < earliest)
            {
                earliest = q.Item.Deadline;
            }
        }

        EarliestDeadline = earliest;
        return due ? _waiting.RemoveAll(q => q.Item.Deadline <= now) : null;
    }
}
