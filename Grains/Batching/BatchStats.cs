namespace StreamInfer.Grains.Batching;

/// <summary>What a scheduler has run since its batcher activated, for status.</summary>
internal sealed class BatchStats
{
    private const int RecentWindow = 64;

    private readonly Queue<int> _recentSizes = new();

    /// <summary>Batches (decode steps, for a decoder) run.</summary>
    public long BatchesRun { get; private set; }

    /// <summary>Requests run to their end.</summary>
    public long ItemsRun { get; private set; }

    /// <summary>Sizes of the most recent batches, oldest first.</summary>
    public IEnumerable<int> RecentSizes => _recentSizes;

    /// <summary>Counts a batch (or step) of <paramref name="size"/>.</summary>
    public void Batch(int size)
    {
        BatchesRun++;
        if (_recentSizes.Count == RecentWindow)
        {
            _recentSizes.Dequeue();
        }

        _recentSizes.Enqueue(size);
    }

    /// <summary>Counts <paramref name="count"/> requests run.</summary>
    public void Items(int count) => ItemsRun += count;
}
