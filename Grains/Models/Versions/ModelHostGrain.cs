using System.Collections.Immutable;
using Orleans.Concurrency;
using StreamInfer.Grains.Placement;

namespace StreamInfer.Grains.Models.Versions;

/// <summary>
/// A silo's side of rollouts and reloads: placed on the silo its key names, it drives that silo's
/// <see cref="ModelRollout"/> and <see cref="RepositorySync"/>.
/// </summary>
[Reentrant]
[SiloKeyPlacement]
internal sealed class ModelHostGrain(ModelCatalog catalog, ModelRollout rollout, RepositorySync repository, ClusterLoad load, ILocalSiloDetails silo) : Grain, IModelHostGrain
{
    /// <summary>The key of the host grain of the silo named <paramref name="siloName"/>.</summary>
    public static string KeyFor(string siloName) => $"models/{SiloNames.ForKey(siloName)}/host";

    /// <summary>The host grain of every active silo, by silo name order.</summary>
    public static async Task<List<(string Silo, IModelHostGrain Host)>> ActiveAsync(IGrainFactory grains)
    {
        var silos = await grains.GetGrain<IManagementGrain>(0).GetDetailedHosts(onlyActive: true);
        return [.. silos.Select(s => s.SiloName).Order(StringComparer.Ordinal).Select(s => (s, grains.GetGrain<IModelHostGrain>(KeyFor(s))))];
    }

    public Task<ImmutableArray<ModelLoadError>> PrepareAsync(string model, string version, string rolloutId)
    {
        if (!OnItsSilo(out var wrong))
        {
            return Task.FromResult<ImmutableArray<ModelLoadError>>([new ModelLoadError(model, null, null, wrong)]);
        }

        // Loading runs on the devices' threads; this grain only awaits it.
        return rollout.PrepareAsync(model, version, rolloutId);
    }

    public Task<bool> CommitAsync(string model, string version) => Task.FromResult(OnItsSilo(out _) && rollout.Commit(model, version));

    public Task AbortAsync(string model, string version, string rolloutId)
    {
        rollout.Abort(model, version, rolloutId);
        return Task.CompletedTask;
    }

    public async Task<ModelHostStatus> GetStatusAsync(string model)
    {
        var known = catalog.TryGet(model, out var entry);
        var siloKey = SiloNames.ForKey(silo.Name);
        var batchers = new List<BatcherVersions>();
        foreach (var device in known ? entry.Instances.Keys : [])
        {
            var status = await GrainFactory.GetGrain<IBatcherGrain>(new BatcherKey(model, siloKey, device).ToString()).GetStatusAsync();
            batchers.Add(new BatcherVersions(device, status.Versions.IsDefault ? [] : status.Versions));
        }

        return new ModelHostStatus(siloKey, known ? entry.Version : null, known ? entry.State : null, rollout.PreparedVersions(model), [.. batchers]);
    }

    public Task<RepositoryScan> ScanAsync()
    {
        var (models, errors) = repository.Scan();
        return Task.FromResult(new RepositoryScan(
            [.. models.Select(m => new ScannedModel(m.Name, m.Kind.ToWire(), m.Version))],
            [.. errors],
            [.. catalog.RepositoryModels.Select(m => new ScannedModel(m.Name, (catalog.TryGet(m.Name, out var e) ? e.Kind : ModelKind.Unknown).ToWire(), m.Version))]));
    }

    public Task<ImmutableArray<ModelLoadError>> AddModelAsync(string model) => repository.AddAsync(model);

    public Task<bool> RemoveModelAsync(string model) => Task.FromResult(repository.Remove(model));

    public Task<ImmutableArray<BatcherLoad>> GetLoadAsync() => Task.FromResult(OnItsSilo(out _) ? load.LocalLoads() : []);

    /// <summary>
    /// Whether this activation runs on the silo its key names. It does unless that silo has left, or had not yet
    /// joined in the view of the silo that placed it: then it goes once idle, so the next call places it afresh.
    /// </summary>
    private bool OnItsSilo(out string why)
    {
        why = $"silo '{this.GetPrimaryKeyString().Split('/')[1]}' is not in the cluster.";
        if (this.GetPrimaryKeyString() == KeyFor(silo.Name))
        {
            return true;
        }

        DeactivateOnIdle();
        return false;
    }
}
