using System.Collections.Immutable;
using Orleans.Concurrency;

namespace StreamInfer;

/// <summary>
/// The cluster-wide truth of which version of one model serves (key: the model's name), its history, and its rollouts.
/// A rollout is two-phase: every silo loads and warms the new version beside the old (prepare); when all have, each
/// switches at once (commit) and work in flight finishes on the version it started with. If any silo fails to prepare,
/// all drop the new version (abort) and the old keeps serving. One rollout at a time: another asked for meanwhile is
/// refused (<see cref="RolloutPhases.Refused"/>), not queued. The state is kept in grain storage.
/// </summary>
[Alias("StreamInfer.IModelVersionGrain")]
public interface IModelVersionGrain : IGrainWithStringKey
{
    /// <summary>Rolls the model out to <paramref name="version"/> (a folder of the repository) on every silo; returns how it ended.</summary>
    /// <remarks>Answers when the rollout has ended: its prepare may take <see cref="ModelVersionTimeouts.Prepare"/>, then
    /// the commits or aborts, so the call waits longer than Orleans' default 30 s.</remarks>
    [Alias("Rollout"), ResponseTimeout(ModelVersionTimeouts.Rollout)]
    Task<RolloutState> RolloutAsync(string version);

    /// <summary>Rolls back to the version that served before the last committed rollout, the same two-phase way.</summary>
    [Alias("Rollback"), ResponseTimeout(ModelVersionTimeouts.Rollout)]
    Task<RolloutState> RollbackAsync();

    /// <summary>The version the last committed rollout made serve, or null when none has (each silo serves its scan's).
    /// A silo that starts later asks this, so that it serves the committed version, never a stale one.</summary>
    [Alias("GetServingVersion"), AlwaysInterleave]
    Task<string?> GetServingVersionAsync();

    /// <summary>The serving version, history, last rollout, and what each silo has loaded.</summary>
    [Alias("GetStatus"), AlwaysInterleave]
    Task<ModelVersionStatus> GetStatusAsync();
}

/// <summary>
/// One silo's side of rollouts (key: <c>models/{silo}/host</c>, placed on that silo): prepares, commits and aborts
/// versions in the silo's model catalog.
/// </summary>
[Alias("StreamInfer.IModelHostGrain")]
public interface IModelHostGrain : IGrainWithStringKey
{
    /// <summary>
    /// Loads and warms <paramref name="version"/> beside the serving one for the rollout <paramref name="rolloutId"/> (an
    /// id its model-version grain makes up); returns the problems (empty when prepared). Refused without loading once
    /// that rollout was aborted on this silo: a prepare can arrive after its rollout gave up on it.
    /// </summary>
    [Alias("PrepareForRollout"), ResponseTimeout(ModelVersionTimeouts.PrepareCall)]
    Task<ImmutableArray<ModelLoadError>> PrepareAsync(string model, string version, string rolloutId);

    /// <summary>Makes a prepared version serve; false when it was not prepared on this silo.</summary>
    [Alias("Commit")]
    Task<bool> CommitAsync(string model, string version);

    /// <summary>Drops a prepared version, cancels the rollout's prepare under way, and refuses its prepare if it comes later. Idempotent.</summary>
    [Alias("AbortRollout")]
    Task AbortAsync(string model, string version, string rolloutId);

    /// <summary>What this silo serves and has prepared of one model.</summary>
    [Alias("GetStatus"), AlwaysInterleave]
    Task<ModelHostStatus> GetStatusAsync(string model);

    /// <summary>Reads this silo's repository again: what it holds now, its problems, and what the silo serves from it.</summary>
    [Alias("Scan"), AlwaysInterleave]
    Task<RepositoryScan> ScanAsync();

    /// <summary>Starts serving a model that appeared in the repository; returns its problems (empty when it serves).</summary>
    [Alias("AddModel"), ResponseTimeout(ModelVersionTimeouts.PrepareCall)]
    Task<ImmutableArray<ModelLoadError>> AddModelAsync(string model);

    /// <summary>Stops serving a repository model (requests in flight finish first); false when it was not served.</summary>
    [Alias("RemoveModel")]
    Task<bool> RemoveModelAsync(string model);

    /// <summary>
    /// This silo's devices and the queue depth of each ready model's batcher on them: what the silo advertises to the
    /// others, which refresh it every <c>LoadRefreshInterval</c>. Cheap and read-only; may be called at any time.
    /// </summary>
    [Alias("GetLoad"), AlwaysInterleave, ReadOnly]
    Task<ImmutableArray<BatcherLoad>> GetLoadAsync();
}

/// <summary>
/// The model repository across the cluster (key: <c>repository</c>): <see cref="ReloadAsync"/> reads it again and
/// brings every silo in line — new models loaded, removed ones unloaded after their requests end, and a model whose
/// newest version (or pinned <c>version</c>) changed rolled out through its <see cref="IModelVersionGrain"/>. Reloads
/// run one at a time.
/// </summary>
[Alias("StreamInfer.IRepositoryGrain")]
public interface IRepositoryGrain : IGrainWithStringKey
{
    /// <summary>Reloads the repository; returns what changed.</summary>
    /// <remarks>Each model added loads, and each version change rolls out, in turn: a caller that stops waiting after
    /// <see cref="ModelVersionTimeouts.Reload"/> gets a timeout while the reload goes on.</remarks>
    [Alias("Reload"), ResponseTimeout(ModelVersionTimeouts.Reload)]
    Task<ReloadReport> ReloadAsync();
}

/// <summary>
/// How long the long calls of rollouts and reloads may take before their callers give up (Orleans' default response
/// timeout is 30 s, far less than a large model's load and warm-up), as <c>hh:mm:ss</c>.
/// </summary>
public static class ModelVersionTimeouts
{
    /// <summary>How long every silo together may take to load and warm a version before the rollout is aborted.</summary>
    public const string Prepare = "00:05:00";

    /// <summary>One silo's prepare (or a new model's load) as its caller waits for it: the prepare's own limit, and
    /// time to answer after it, so that the rollout's limit is the one that ends it.</summary>
    public const string PrepareCall = "00:05:30";

    /// <summary>A rollout or rollback: the prepare, then the commits or aborts and the state's write.</summary>
    public const string Rollout = "00:07:00";

    /// <summary>A whole reload: several loads and rollouts one after another.</summary>
    public const string Reload = "00:30:00";
}

/// <summary>A model as a repository scan found it.</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.ScannedModel")]
public sealed record ScannedModel(
    [property: Id(0)] string Name,
    [property: Id(1)] string Kind,
    [property: Id(2)] string Version);

/// <summary>A silo's repository as read now, its problems, and the repository models the silo serves (name, version).</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.RepositoryScan")]
public sealed record RepositoryScan(
    [property: Id(0)] ImmutableArray<ScannedModel> Models,
    [property: Id(1)] ImmutableArray<ModelLoadError> Errors,
    [property: Id(2)] ImmutableArray<ScannedModel> Served);

/// <summary>What a reload changed: models added and removed, rollouts (with how each ended), and every problem found.</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.ReloadReport")]
public sealed record ReloadReport(
    [property: Id(0)] ImmutableArray<string> Added,
    [property: Id(1)] ImmutableArray<string> Removed,
    [property: Id(2)] ImmutableArray<RolloutState> Rollouts,
    [property: Id(3)] ImmutableArray<ModelLoadError> Errors);

/// <summary>The phases of a rollout. Values travel as these strings.</summary>
public static class RolloutPhases
{
    /// <summary>Every silo is loading and warming the new version.</summary>
    public const string Preparing = "preparing";

    /// <summary>Every silo serves the new version.</summary>
    public const string Committed = "committed";

    /// <summary>A silo failed or timed out in prepare: every silo dropped the new version; the old one serves.</summary>
    public const string Aborted = "aborted";

    /// <summary>Not started: another rollout is under way, or the version already serves.</summary>
    public const string Refused = "refused";
}

/// <summary>A silo's failure in a rollout, and why.</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.RolloutFailure")]
public sealed record RolloutFailure(
    [property: Id(0)] string Silo,
    [property: Id(1)] string Reason);

/// <summary>One rollout: from which version to which, its phase, when, and which silos failed and why.</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.RolloutState")]
public sealed record RolloutState(
    [property: Id(0)] string Model,
    [property: Id(1)] string? From,
    [property: Id(2)] string To,
    [property: Id(3)] string Phase,
    [property: Id(4)] ImmutableArray<RolloutFailure> Failures,
    [property: Id(5)] DateTimeOffset StartedAt,
    [property: Id(6)] DateTimeOffset? EndedAt,
    [property: Id(7)] bool Rollback = false);

/// <summary>What one silo serves and has prepared of a model, and the versions each of its batchers holds.</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.ModelHostStatus")]
public sealed record ModelHostStatus(
    [property: Id(0)] string Silo,
    [property: Id(1)] string? ServingVersion,
    [property: Id(2)] ModelState? State,
    [property: Id(3)] ImmutableArray<string> PreparedVersions,
    [property: Id(4)] ImmutableArray<BatcherVersions> Batchers = default);

/// <summary>The versions one batcher (one device) holds: the serving one, and those its requests in flight started on.</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.BatcherVersions")]
public sealed record BatcherVersions(
    [property: Id(0)] string Device,
    [property: Id(1)] ImmutableArray<string> Versions);

/// <summary>A model's versions across the cluster.</summary>
/// <param name="Model">The model.</param>
/// <param name="ServingVersion">The version the last committed rollout made serve; null until the first rollout (each
/// silo serves what its repository scan chose).</param>
/// <param name="PreviousVersion">What served before it (what a rollback returns to).</param>
/// <param name="History">Committed rollouts and rollbacks, oldest first (the last 32).</param>
/// <param name="LastRollout">The last rollout, whatever its end; null when none was asked for.</param>
/// <param name="Silos">Each active silo's view.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.ModelVersionStatus")]
public sealed record ModelVersionStatus(
    [property: Id(0)] string Model,
    [property: Id(1)] string? ServingVersion,
    [property: Id(2)] string? PreviousVersion,
    [property: Id(3)] ImmutableArray<RolloutState> History,
    [property: Id(4)] RolloutState? LastRollout,
    [property: Id(5)] ImmutableArray<ModelHostStatus> Silos);

/// <summary>
/// How deep one batcher's queue is (rows waiting for the device), as its silo reports it to the others so that sessions
/// can spill there when their own silo's batcher is backed up.
/// </summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.BatcherLoad")]
public sealed record BatcherLoad(
    [property: Id(0)] string Model,
    [property: Id(1)] string Device,
    [property: Id(2)] int QueuedRows);
