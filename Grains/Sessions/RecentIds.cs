namespace StreamInfer.Grains.Sessions;

/// <summary>
/// The last <see cref="Capacity"/> ids added, oldest forgotten first: what a session remembers of the requests that
/// ended, so that a resubmit of one (its first submit arrived after all) does not run it twice. Not thread-safe: owned
/// by one grain.
/// </summary>
internal sealed class RecentIds(int capacity)
{
    private readonly HashSet<string> _ids = new(StringComparer.Ordinal);
    private readonly Queue<string> _order = new();

    public int Capacity { get; } = capacity > 0 ? capacity : throw new ArgumentOutOfRangeException(nameof(capacity));

    public void Add(string id)
    {
        if (!_ids.Add(id))
        {
            return;
        }

        _order.Enqueue(id);
        if (_order.Count > Capacity)
        {
            _ids.Remove(_order.Dequeue());
        }
    }

    public bool Contains(string id) => _ids.Contains(id);
}
