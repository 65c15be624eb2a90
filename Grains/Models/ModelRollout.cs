using System.Collections.Concurrent;
using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Models.Repository;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models;

/// <summary>
/// This silo's side of a two-phase rollout: <see cref="PrepareAsync"/> loads and warms a version beside the serving
/// one, <see cref="Commit"/> swaps it in with one reference swap, <see cref="Abort"/> drops it. Requests admitted before
/// a commit keep the version they started on; the old version is released when the last of them ends.
/// </summary>
public sealed partial class ModelRollout(ModelCatalog catalog, ModelLoader loader, IOptions<ModelRepositoryOptions> repository, ILogger<ModelRollout> logger)
{
    private readonly string _repositoryPath = Path.GetFullPath(repository.Value.Path);
    private readonly ConcurrentDictionary<(string Model, string Version), ModelEntry> _prepared = new();
    private readonly ConcurrentDictionary<(string Model, string Version), Preparing> _preparing = new();
    private readonly object _commitLock = new();

    // Rollouts aborted here, newest last: a prepare of one that reaches this silo after its abort is refused before it
    // loads anything. Keyed by rollout, so a later rollout of the same version prepares as usual.
    private readonly Queue<(string Model, string Version, string RolloutId)> _abortedOrder = new();
    private readonly HashSet<(string Model, string Version, string RolloutId)> _aborted = [];
    private readonly object _abortLock = new();

    /// <summary>How many aborted rollouts a silo remembers.</summary>
    internal const int AbortedRemembered = 256;

    /// <summary>
    /// Loads version <paramref name="version"/> of model <paramref name="name"/> from the repository beside the serving
    /// one, on every device, and warms it up. Nothing serves it until <see cref="Commit"/>. Returns the problems that stop
    /// it (empty when prepared): an unreadable or missing file, a kind or priority levels that differ, a tensor model
    /// whose inputs changed incompatibly, a failed warm-up, an abort of <paramref name="rolloutId"/> (before or while it
    /// loads). Preparing a version already prepared succeeds at once.
    /// </summary>
    /// <param name="name">The model.</param>
    /// <param name="version">The version: a folder of the model in the repository.</param>
    /// <param name="rolloutId">The rollout this prepare is part of, as its <see cref="Abort"/> names it; null outside a rollout.</param>
    /// <param name="cancellationToken">Cancels the load.</param>
    public async Task<ImmutableArray<ModelLoadError>> PrepareAsync(string name, string version, string? rolloutId = null, CancellationToken cancellationToken = default)
    {
        ImmutableArray<ModelLoadError> Refuse(string reason) => [new ModelLoadError(name, null, "version", reason)];
        var abortedMessage = $"version {version} was aborted while it was being prepared.";
        if (WasAborted(name, version, rolloutId))
        {
            LogLatePrepareRefused(logger, name, version);
            return Refuse($"the rollout to version {version} was aborted before this prepare arrived.");
        }

        if (!catalog.TryGet(name, out var current))
        {
            return Refuse($"no model named '{name}' is served.");
        }

        switch (current.Kind)
        {
            case ModelKind.Echo:
                return Refuse("an echo model has no versions to roll out.");
            case ModelKind.Unknown:
                return Refuse("the model's config is broken; fix it and reload.");
        }

        if (_prepared.ContainsKey((name, version)))
        {
            return [];
        }

        var (definition, errors) = ModelRepositoryScanner.ScanVersion(_repositoryPath, name, version);
        if (definition is null)
        {
            return [.. errors];
        }

        if (definition.Kind != current.Kind)
        {
            return Refuse($"version {version} is a {definition.Kind.ToWire()} model; version {current.Version} is a {current.Kind.ToWire()} model.");
        }

        if (definition.Options.PriorityLevels != current.Options.PriorityLevels)
        {
            return Refuse($"version {version} has {definition.Options.PriorityLevels} priority levels, the serving version {current.Options.PriorityLevels}: requests queued at one level cannot move to another.");
        }

        // An abort while the version loads cancels the load; one that comes after it finished finds it prepared.
        using var aborted = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var preparing = new Preparing(aborted, rolloutId);
        lock (_abortLock)
        {
            // Checked again with the registration, under the abort's lock: an abort either finds this prepare or is seen here.
            if (WasAborted(name, version, rolloutId))
            {
                LogLatePrepareRefused(logger, name, version);
                return Refuse($"the rollout to version {version} was aborted before this prepare arrived.");
            }

            if (!_preparing.TryAdd((name, version), preparing))
            {
                return Refuse($"version {version} is already being prepared on this silo.");
            }
        }

        ModelEntry? prepared;
        ImmutableArray<ModelLoadError> problems;
        try
        {
            (prepared, problems) = await loader.LoadBesideAsync(definition, aborted.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            LogPrepareAborted(logger, name, version);
            return Refuse(abortedMessage);
        }
        finally
        {
            _preparing.TryRemove(KeyValuePair.Create((name, version), preparing));
        }

        if (prepared is null)
        {
            return problems;
        }

        // A tensor model's requests are checked against its inputs at admission, so a version must take the old one's.
        if (current.Kind == ModelKind.Tensor && current is { State: ModelState.Ready, Any: { } serving }
            && Incompatibility(serving.Inputs, prepared.Any!.Inputs) is { } incompatible)
        {
            prepared.Release();
            return Refuse($"version {version} changes the inputs incompatibly: {incompatible}");
        }

        // The abort may have come between the load's last step and here: what it loaded goes at once.
        if (aborted.IsCancellationRequested || !_prepared.TryAdd((name, version), prepared))
        {
            prepared.Release();
            return aborted.IsCancellationRequested ? Refuse(abortedMessage) : [];
        }

        LogPrepared(logger, name, version, string.Join(", ", prepared.Instances.Keys));
        return [];
    }

    /// <summary>
    /// The prepared version serves from now on (one reference swap); the old one is released when its last request
    /// ends. False when the version was not prepared here.
    /// </summary>
    public bool Commit(string name, string version)
    {
        ModelEntry? old;
        lock (_commitLock)
        {
            if (!_prepared.TryRemove((name, version), out var prepared))
            {
                return false;
            }

            old = catalog.Publish(prepared, []);
        }

        old?.Release();
        LogCommitted(logger, name, version, old?.Version ?? "?");
        return true;
    }

    /// <summary>
    /// Drops a version that will not serve (a rollout aborted): a prepared one is released, and one still being
    /// prepared for <paramref name="rolloutId"/> is cancelled (what it loaded is released). A prepare of
    /// <paramref name="rolloutId"/> that arrives later is refused. A null rollout cancels any prepare of the version and
    /// refuses none later. Unknown versions are ignored.
    /// </summary>
    public void Abort(string name, string version, string? rolloutId = null)
    {
        Preparing? preparing;
        lock (_abortLock)
        {
            if (rolloutId is not null && _aborted.Add((name, version, rolloutId)))
            {
                _abortedOrder.Enqueue((name, version, rolloutId));
                if (_abortedOrder.Count > AbortedRemembered)
                {
                    _aborted.Remove(_abortedOrder.Dequeue());
                }
            }

            if (!_preparing.TryGetValue((name, version), out preparing) || (rolloutId is not null && preparing.RolloutId != rolloutId))
            {
                preparing = null;
            }
        }

        try
        {
            preparing?.Aborted.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The prepare ended meanwhile; what it prepared, if anything, is dropped below.
        }

        if (_prepared.TryRemove((name, version), out var prepared))
        {
            prepared.Release();
        }
    }

    /// <summary>Drops every version of <paramref name="name"/> prepared or being prepared here (the model left the repository).</summary>
    public void AbortAll(string name)
    {
        foreach (var version in PreparedVersions(name).Concat(PreparingVersions(name)).Distinct(StringComparer.Ordinal))
        {
            Abort(name, version);
        }
    }

    /// <summary>Versions of a model prepared on this silo and not yet committed or aborted.</summary>
    public ImmutableArray<string> PreparedVersions(string name)
        => [.. _prepared.Keys.Where(k => k.Model == name).Select(k => k.Version).Order(StringComparer.Ordinal)];

    /// <summary>Versions of a model whose prepare is under way on this silo.</summary>
    public ImmutableArray<string> PreparingVersions(string name)
        => [.. _preparing.Keys.Where(k => k.Model == name).Select(k => k.Version).Order(StringComparer.Ordinal)];

    private bool WasAborted(string name, string version, string? rolloutId)
    {
        if (rolloutId is null)
        {
            return false;
        }

        lock (_abortLock)
        {
            return _aborted.Contains((name, version, rolloutId));
        }
    }

    /// <summary>Why a new version's inputs cannot take the old version's requests (names, types, shapes), or null.</summary>
    private static string? Incompatibility(ImmutableArray<TensorSpec> old, ImmutableArray<TensorSpec> next)
    {
        foreach (var input in old)
        {
            var match = next.FirstOrDefault(n => n.Name == input.Name);
            if (match is null)
            {
                return $"input '{input.Name}' is gone (it has {string.Join(", ", next.Select(n => n.Name))}).";
            }

            if (match.ElementType != input.ElementType || !match.Shape.SequenceEqual(input.Shape))
            {
                return $"input '{input.Name}' was {input.ElementType.ToWire()} [{string.Join(",", input.Shape)}], is {match.ElementType.ToWire()} [{string.Join(",", match.Shape)}].";
            }
        }

        var added = next.FirstOrDefault(n => !old.Any(o => o.Name == n.Name));
        return added is null ? null : $"it needs a new input '{added.Name}' that requests of the serving version do not send.";
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} version {Version}: the prepare was aborted before it finished; what it loaded is released")]
    private static partial void LogPrepareAborted(ILogger logger, string model, string version);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} version {Version}: a prepare arrived after its rollout was aborted; it loads nothing")]
    private static partial void LogLatePrepareRefused(ILogger logger, string model, string version);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} version {Version} is prepared on {Devices}")]
    private static partial void LogPrepared(ILogger logger, string model, string version, string devices);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} now serves version {Version} (was {Previous}); the old version is released when its last request ends")]
    private static partial void LogCommitted(ILogger logger, string model, string version, string previous);

    /// <summary>A prepare under way: how to cancel it, and the rollout it belongs to.</summary>
    private sealed record Preparing(CancellationTokenSource Aborted, string? RolloutId);
}
