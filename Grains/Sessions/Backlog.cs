namespace StreamInfer.Grains.Sessions;

/// <summary>
/// A client's bounded set of unfinished requests, keyed by request id, with the slow-consumer watermark: one warning
/// when the count reaches 80% of capacity, re-armed once it falls below half. Not thread-safe: owned by one grain.
/// </summary>
public sealed class Backlog<T>
{
    private readonly Dictionary<string, T> _entries = new(StringComparer.Ordinal);
    private readonly SlowConsumerMark _mark;

    public Backlog(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        _mark = new SlowConsumerMark(capacity);
    }

    public int Capacity { get; }

    public int Count => _entries.Count;

    public bool IsFull => _entries.Count >= Capacity;

    public IReadOnlyDictionary<string, T> Entries => _entries;

    public bool Contains(string id) => _entries.ContainsKey(id);

    /// <summary>
    /// Adds an entry. Returns false when the backlog is full or the id is present. <paramref name="warn"/> is true
    /// exactly once per crossing of the high-water mark.
    /// </summary>
    public bool TryAdd(string id, T entry, out bool warn)
    {
        warn = false;
        if (IsFull || !_entries.TryAdd(id, entry))
        {
            return false;
        }

        warn = _mark.Observe(_entries.Count);
        return true;
    }

    public bool Remove(string id, out T? entry)
    {
        var removed = _entries.Remove(id, out entry);
        if (removed)
        {
            _mark.Observe(_entries.Count);
        }

        return removed;
    }

    /// <summary>A backlog of another capacity holding these entries (past a smaller capacity, it is full until they end).</summary>
    public Backlog<T> WithCapacity(int capacity)
    {
        var resized = new Backlog<T>(capacity);
        foreach (var (id, entry) in _entries)
        {
            resized._entries[id] = entry;
        }

        resized._mark.Observe(resized.Count);
        return resized;
    }

    public void Clear()
    {
        _entries.Clear();
        _mark.Observe(0);
    }
}
