using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.Grains.Models;

/// <summary>
/// Which batch sizes a model is run at before it serves, so that no client pays a first run's cost: the sizes its
/// <c>warmup_batch_sizes</c> lists, or else powers of two up to its largest batch, and the largest itself. A model that
/// fails any of them does not serve.
/// </summary>
public static class WarmupPolicy
{
    /// <summary>The batch sizes <paramref name="definition"/> warms up at, in order.</summary>
    public static IReadOnlyList<int> SizesFor(ModelDefinition definition)
        => definition.Config.WarmupBatchSizes is { Count: > 0 } given ? given : PowersOfTwoUpTo(definition.Options.MaxBatchSize);

    /// <summary>Powers of two below <paramref name="maxBatchSize"/>, then <paramref name="maxBatchSize"/>.</summary>
    public static IReadOnlyList<int> PowersOfTwoUpTo(int maxBatchSize)
    {
        var sizes = new List<int>();
        for (var size = 1; size < maxBatchSize; size *= 2)
        {
            sizes.Add(size);
        }

        sizes.Add(maxBatchSize);
        return sizes;
    }
}
