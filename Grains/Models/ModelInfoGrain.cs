using Orleans.Concurrency;

namespace StreamInfer.Grains.Models;

/// <summary>Answers model metadata from the catalog of the silo it runs on; a local stateless worker, so it never hops.</summary>
[StatelessWorker]
internal sealed class ModelInfoGrain(ModelCatalog catalog) : Grain, IModelInfoGrain
{
    public Task<ModelInfo?> GetModelAsync(string name)
        => Task.FromResult(catalog.TryGet(name, out var entry) ? entry.ToInfo() : null);

    public Task<RepositoryStatus> GetRepositoryAsync() => Task.FromResult(catalog.Status);
}
