namespace StreamInfer.Grains.Sessions;

/// <summary>
/// A client's bounded set of unfinished requests, keyed by request id, with the slow-consumer watermark: one warning
/// when the count reaches 80% of capacity, re-armed once it falls below half. Not thread-safe: owned by one grain.
/// </summary>
public sealed class Backlog<T>
{
    private readonly Dictionary<string, T> _entries = new(StringComparer.Ordinal);
    private bool _warningArmed = true;

    public Backlog(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        HighWater = Math.Max(1, (int)Math.Ceiling(capacity * 0.8));
        LowWater = capacity / 2;
    }

    public int Capacity { get; }

    /// <summary>The count at which the warning fires (80% of capacity, rounded up).</summary>
    public int HighWater { get; }

    /// <summary>The warning re-arms when the count falls below this (half the capacity).</summary>
    public int LowWater { get; }

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

        if (_warningArmed && _entries.Count >= HighWater)
        {
            _warningArmed = false;
            warn = true;
        }

        return true;
    }

    public bool Remove(string id, out T? entry)
    {
        var removed = _entries.Remove(id, out entry);
        if (removed && _entries.Count < LowWater)
        {
            _warningArmed = true;
        }

        return removed;
    }

    public void Clear()
    {
        _entries.Clear();
        _warningArmed = true;
    }
}
