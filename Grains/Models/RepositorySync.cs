using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Models.Repository;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models;

/// <summary>
/// Keeps the catalog in step with the model repository folder: at start-up every model it holds is registered
/// (<see cref="Register"/>, so every name is known at once) and then loaded one by one (<see cref="LoadAsync"/>); later,
/// a model that appears is added (<see cref="AddAsync"/>) and one whose folder went is removed (<see cref="Remove"/>).
/// </summary>
public sealed partial class RepositorySync(
    ModelCatalog catalog,
    ModelLoader loader,
    ModelRollout rollout,
    IOptions<ModelRepositoryOptions> options,
    ILogger<RepositorySync> logger)
{
    /// <summary>The repository folder, resolved.</summary>
    public string RepositoryPath { get; } = Path.GetFullPath(options.Value.Path);

    /// <summary>Scans the repository: every model it holds now (configured names left out), and every problem.</summary>
    public (List<ModelDefinition> Models, List<ModelLoadError> Errors) Scan()
        => ModelRepositoryScanner.Scan(RepositoryPath, catalog.Configured);

    /// <summary>
    /// The start-up scan: registers every repository model, echo models ready, ONNX models loading, and broken ones
    /// failed with their reasons. Returns the models <see cref="LoadAsync"/> is to load.
    /// </summary>
    public IReadOnlyList<ModelDefinition> Register()
    {
        var (definitions, errors) = Scan();
        var pending = new List<ModelDefinition>();
        foreach (var definition in definitions)
        {
            if (definition.Kind == ModelKind.Echo)
            {
                catalog.Publish(loader.Echo(definition), []);
            }
            else
            {
                pending.Add(definition);
                catalog.Publish(ModelEntry.Unloaded(definition.Name, definition.Kind, definition.Version, definition.Options, ModelState.Loading, []), []);
            }
        }

        // A model whose config is broken still has a name: it is listed as failed, with its reasons.
        foreach (var failed in errors.GroupBy(e => e.Model, StringComparer.Ordinal))
        {
            if (!catalog.TryGet(failed.Key, out _))
            {
                catalog.Publish(ModelEntry.Unloaded(failed.Key, ModelKind.Unknown, "?", new ModelOptions(), ModelState.Failed, [.. failed]), []);
            }
        }

        catalog.Report(errors);
        return pending;
    }

    /// <summary>
    /// Loads what <see cref="Register"/> found, one model at a time, each on every device; then logs one report of
    /// everything that failed and completes <see cref="ModelCatalog.Loaded"/>.
    /// </summary>
    public async Task LoadAsync(IReadOnlyList<ModelDefinition> pending, CancellationToken cancellationToken)
    {
        try
        {
            foreach (var definition in pending)
            {
                cancellationToken.ThrowIfCancellationRequested();
                PublishLoaded(await loader.LoadAsync(definition));
            }
        }
        finally
        {
            var errors = catalog.FinishLoading();
            if (errors.Length > 0)
            {
                LogRepositoryErrors(logger, RepositoryPath, errors.Length, string.Join(Environment.NewLine, errors.Select(e => "  " + e)));
            }
        }
    }

    /// <summary>
    /// Starts serving a model that appeared in the repository since the silo started: scans it, loads and warms it on
    /// every device. Returns its problems (empty when it serves); a model already served is left alone.
    /// </summary>
    public async Task<ImmutableArray<ModelLoadError>> AddAsync(string name)
    {
        if (catalog.TryGet(name, out _))
        {
            return [];
        }

        var (models, errors) = Scan();
        if (models.FirstOrDefault(m => m.Name == name) is not { } definition)
        {
            var own = errors.Where(e => e.Model == name).ToImmutableArray();
            return own.IsEmpty ? [new ModelLoadError(name, null, null, "the repository holds no such model.")] : own;
        }

        if (definition.Kind == ModelKind.Echo)
        {
            catalog.Publish(loader.Echo(definition), []);
            return [];
        }

        catalog.Publish(ModelEntry.Unloaded(definition.Name, definition.Kind, definition.Version, definition.Options, ModelState.Loading, []), []);
        var entry = await loader.LoadAsync(definition);
        PublishLoaded(entry);
        return entry.Errors;
    }

    /// <summary>A load took time: what it replaces may have been removed or rolled forward meanwhile, and then the
    /// loaded instances go instead of overwriting what serves.</summary>
    private void PublishLoaded(ModelEntry entry)
    {
        if (!catalog.TryPublishLoaded(entry))
        {
            entry.Release();
        }
    }

    /// <summary>
    /// Stops serving a repository model (its folder was removed): new requests get <c>unknown_model</c> at once;
    /// requests in flight finish, then its instances are released. False for a configured model or an unknown name.
    /// </summary>
    public bool Remove(string name)
    {
        if (catalog.Configured.Contains(name) || !catalog.TryRemove(name, out var removed))
        {
            return false;
        }

        rollout.AbortAll(name);
        removed.Release();
        LogRemoved(logger, name, removed.Version);
        return true;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} (version {Version}) left the repository: no longer served; released once its last request ends")]
    private static partial void LogRemoved(ILogger logger, string model, string version);

    [LoggerMessage(Level = LogLevel.Error, Message = "Model repository {Path}: {Count} problems; the models concerned are not served:\n{Errors}")]
    private static partial void LogRepositoryErrors(ILogger logger, string path, int count, string errors);
}
