namespace StreamInfer.Grains.Batching;

/// <summary>
/// A batcher's queue: one FIFO per priority level, highest level served first. Counts requests and batch rows (a
/// request may carry several rows along the batch axis), so that batches are cut by rows and admission can estimate
/// the wait ahead of a request of a given priority.
/// </summary>
/// <typeparam name="T">The queued item.</typeparam>
internal sealed class LeveledQueue<T>(int levels, Func<T, int> rowsOf, Func<T, long> enqueuedAtOf)
{
    private readonly List<T>[] _levels = [.. Enumerable.Range(0, levels).Select(_ => new List<T>())];
    private readonly long[] _rows = new long[levels];

    /// <summary>Requests queued.</summary>
    public int Count { get; private set; }

    /// <summary>Rows queued.</summary>
    public long Rows { get; private set; }

    public int Levels => _levels.Length;

    /// <summary>The enqueue timestamp of the oldest request, or <see cref="long.MaxValue"/> when empty.</summary>
    public long OldestEnqueuedAt
    {
        get
        {
            var oldest = long.MaxValue;
            foreach (var level in _levels)
            {
                if (level.Count > 0 && enqueuedAtOf(level[0]) < oldest)
                {
                    oldest = enqueuedAtOf(level[0]);
                }
            }

            return oldest;
        }
    }

    /// <summary>Rows that would be batched before a new request of <paramref name="priority"/>.</summary>
    public long RowsAtOrAbove(int priority)
    {
        long rows = 0;
        for (var level = priority; level < _levels.Length; level++)
        {
            rows += _rows[level];
        }

        return rows;
    }

    public void Add(T item, int priority)
    {
        _levels[priority].Add(item);
        var rows = rowsOf(item);
        _rows[priority] += rows;
        Rows += rows;
        Count++;
    }

    /// <summary>The request the next batch starts with (highest level, oldest), or false when the queue is empty.</summary>
    public bool TryPeek(out T item)
    {
        for (var level = _levels.Length - 1; level >= 0; level--)
        {
            if (_levels[level].Count > 0)
            {
                item = _levels[level][0];
                return true;
            }
        }

        item = default!;
        return false;
    }

    /// <summary>
    /// Takes the next batch: from the highest level down, oldest first, while the rows fit in <paramref name="maxRows"/>.
    /// Stops at the first request that does not fit (it leads the next batch) rather than let smaller ones overtake it.
    /// </summary>
    public List<T> TakeBatch(int maxRows)
    {
        var batch = new List<T>();
        long taken = 0;
        for (var level = _levels.Length - 1; level >= 0; level--)
        {
            var queue = _levels[level];
            var count = 0;
            while (count < queue.Count)
            {
                var rows = rowsOf(queue[count]);
                if (batch.Count + count > 0 && taken + rows > maxRows)
                {
                    break;
                }

                taken += rows;
                _rows[level] -= rows;
                count++;
            }

            batch.AddRange(queue.GetRange(0, count));
            queue.RemoveRange(0, count);
            if (queue.Count > 0)
            {
                break;
            }
        }

        Count -= batch.Count;
        Rows -= taken;
        return batch;
    }

    /// <summary>
    /// Takes the next batch among the requests <paramref name="choose"/> lets go, as <see cref="TakeBatch"/> does: a
    /// request it skips keeps its place, one it drops is removed into <paramref name="dropped"/>. It is asked only about
    /// a request that fits, so a <see cref="QueueChoice.Take"/> is always taken.
    /// </summary>
    public List<T> TakeWhere(int maxRows, Func<T, QueueChoice> choose, List<T> dropped)
    {
        var batch = new List<T>();
        long taken = 0;
        for (var level = _levels.Length - 1; level >= 0; level--)
        {
            var queue = _levels[level];
            var kept = 0;
            var full = false;
            for (var i = 0; i < queue.Count; i++)
            {
                var item = queue[i];
                var rows = rowsOf(item);
                full |= batch.Count > 0 && taken + rows > maxRows;
                var choice = full ? QueueChoice.Skip : choose(item);
                if (choice == QueueChoice.Skip)
                {
                    queue[kept++] = item;
                    continue;
                }

                (choice == QueueChoice.Take ? batch : dropped).Add(item);
                taken += choice == QueueChoice.Take ? rows : 0;
                _rows[level] -= rows;
                Rows -= rows;
                Count--;
            }

            queue.RemoveRange(kept, queue.Count - kept);
            if (full)
            {
                break;
            }
        }

        return batch;
    }

    /// <summary>Removes every request that matches; returns them.</summary>
    public List<T> RemoveAll(Predicate<T> match)
    {
        var removed = new List<T>();
        for (var level = 0; level < _levels.Length; level++)
        {
            var at = level;
            _levels[level].RemoveAll(item =>
            {
                if (!match(item))
                {
                    return false;
                }

                removed.Add(item);
                var rows = rowsOf(item);
                _rows[at] -= rows;
                Rows -= rows;
                return true;
            });
        }

        Count -= removed.Count;
        return removed;
    }

    /// <summary>Every queued request, highest level first.</summary>
    public IEnumerable<T> Items
    {
        get
        {
            for (var level = _levels.Length - 1; level >= 0; level--)
            {
                foreach (var item in _levels[level])
                {
                    yield return item;
                }
            }
        }
    }
}

/// <summary>What <see cref="LeveledQueue{T}.TakeWhere"/> does with a request.</summary>
internal enum QueueChoice
{
    /// <summary>Into the batch.</summary>
    Take,

    /// <summary>Left where it is, for a later batch.</summary>
    Skip,

    /// <summary>Out of the queue, into no batch (it cannot run).</summary>
    Drop,
}
