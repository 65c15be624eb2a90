using Microsoft.Extensions.Logging;

namespace StreamInfer.Grains.Models.Versions;

/// <summary>
/// Reloads the model repository across the cluster (see <see cref="IRepositoryGrain"/>). Not reentrant: reloads run one
/// at a time. Every silo reads its own copy of the repository; the first active silo's scan is the one acted on.
/// </summary>
internal sealed partial class RepositoryGrain(ILogger<RepositoryGrain> logger) : Grain, IRepositoryGrain
{
    public async Task<ReloadReport> ReloadAsync()
    {
        var hosts = (await ModelHostGrain.ActiveAsync(GrainFactory)).Select(h => h.Host).ToList();
        var scans = await Task.WhenAll(hosts.Select(h => h.ScanAsync()));
        var repository = scans[0];
        var errors = repository.Errors.ToBuilder();
        var added = new List<string>();
        var rollouts = new List<RolloutState>();

        foreach (var model in repository.Models)
        {
            var missing = hosts.Where((_, i) => !scans[i].Served.Any(s => s.Name == model.Name)).ToList();
            foreach (var host in missing)
            {
                errors.AddRange(await host.AddModelAsync(model.Name));
            }

            if (missing.Count > 0)
            {
                added.Add(model.Name);
            }

            if (missing.Count < hosts.Count && scans.Any(scan => scan.Served.Any(s => s.Name == model.Name && s.Version != model.Version)))
            {
                rollouts.Add(await GrainFactory.GetGrain<IModelVersionGrain>(model.Name).RolloutAsync(model.Version));
            }
        }

        // A folder that is gone is unloaded; one whose config is now broken stays as it was (its errors are reported).
        var removed = scans.SelectMany(s => s.Served).Select(s => s.Name).Distinct(StringComparer.Ordinal)
            .Where(name => !repository.Models.Any(m => m.Name == name) && !repository.Errors.Any(e => e.Model == name))
            .Order(StringComparer.Ordinal)
            .ToList();
        foreach (var name in removed)
        {
            await Task.WhenAll(hosts.Select(h => h.RemoveModelAsync(name)));
        }

        LogReloaded(logger, hosts.Count, added.Count, removed.Count, rollouts.Count, errors.Count);
        return new ReloadReport([.. added], [.. removed], [.. rollouts], errors.ToImmutable());
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Repository reloaded on {Silos} silos: {Added} added, {Removed} removed, {Rollouts} rollouts, {Errors} problems")]
    private static partial void LogReloaded(ILogger logger, int silos, int added, int removed, int rollouts, int errors);
}
