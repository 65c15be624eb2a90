using System.Collections.Immutable;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using StreamInfer.Grains.Hosting;

namespace StreamInfer.Grains.Models.Versions;

/// <summary>
/// One model's serving version across the cluster, and its rollouts (see <see cref="IModelVersionGrain"/>). Reentrant
/// so that the status can be read while a rollout runs; a second rollout asked for meanwhile is refused.
/// </summary>
[Reentrant]
internal sealed partial class ModelVersionGrain(
    [PersistentState("versions", ModelVersionGrain.Storage)] IPersistentState<ModelVersionState> state,
    [FromKeyedServices(StreamInferClock.Key)] TimeProvider time,
    ILogger<ModelVersionGrain> logger) : Grain, IModelVersionGrain
{
    /// <summary>The grain storage the versions are kept in.</summary>
    public const string Storage = "ModelVersions";

    /// <summary>How long every silo together may take to load and warm a version before the rollout is aborted.</summary>
    private static readonly TimeSpan PrepareTimeout = TimeSpan.Parse(ModelVersionTimeouts.Prepare, System.Globalization.CultureInfo.InvariantCulture);

    private const int HistoryLength = 32;

    private RolloutState? _running;

    private string Model => this.GetPrimaryKeyString();

    public Task<RolloutState> RolloutAsync(string version) => RollAsync(version, rollback: false);

    public Task<RolloutState> RollbackAsync()
        => state.State.Previous is { } previous
            ? RollAsync(previous, rollback: true)
            : Task.FromResult(Refused(state.State.Serving, state.State.Serving ?? "?", "there is no earlier version to roll back to.", rollback: true));

    public Task<string?> GetServingVersionAsync() => Task.FromResult(state.State.Serving);

    public async Task<ModelVersionStatus> GetStatusAsync()
    {
        var silos = new List<ModelHostStatus>();
        foreach (var (_, host) in await ModelHostGrain.ActiveAsync(GrainFactory))
        {
            silos.Add(await host.GetStatusAsync(Model));
        }

        var s = state.State;
        return new ModelVersionStatus(Model, s.Serving, s.Previous, [.. s.History], _running ?? s.LastRollout, [.. silos]);
    }

    private async Task<RolloutState> RollAsync(string version, bool rollback)
    {
        var from = state.State.Serving;
        if (_running is { } busy)
        {
            return Refused(from, version, $"a rollout from {busy.From ?? "the scanned version"} to {busy.To} is under way; try again when it has ended.", rollback);
        }

        if (string.IsNullOrWhiteSpace(version) || version.Length > 128)
        {
            return Refused(from, version, "the version must be a folder name of the model in the repository.", rollback);
        }

        // Claimed before the first await: the grain is reentrant, and a second call must see this one under way.
        var started = time.GetUtcNow();
        var rolloutId = Guid.NewGuid().ToString("N");
        _running = new RolloutState(Model, from, version, RolloutPhases.Preparing, [], started, null, rollback);
        try
        {
            var hosts = await ModelHostGrain.ActiveAsync(GrainFactory);
            from ??= (await hosts[0].Host.GetStatusAsync(Model)).ServingVersion;
            if (from == version)
            {
                return Refused(from, version, $"version {version} already serves.", rollback);
            }

            _running = _running with { From = from };
            LogRolloutStarted(logger, Model, from ?? "?", version, hosts.Count);
            var prepares = hosts.Select(async h =>
            {
                try
                {
                    var problems = await h.Host.PrepareAsync(Model, version, rolloutId).WaitAsync(PrepareTimeout);
                    return problems.Select(p => new RolloutFailure(h.Silo, p.ToString())).ToList();
                }
                catch (TimeoutException)
                {
                    return [new RolloutFailure(h.Silo, $"did not prepare version {version} within {PrepareTimeout.TotalMinutes:F0} min.")];
                }
                catch (Exception ex)
                {
                    // The exception's text goes to the log: the failure is shown on unguarded endpoints.
                    LogPrepareFailed(logger, ex, Model, version, h.Silo);
                    return [new RolloutFailure(h.Silo, $"prepare failed ({ex.GetType().Name}); the log has the details.")];
                }
            });
            var failures = (await Task.WhenAll(prepares)).SelectMany(f => f).ToImmutableArray();

            RolloutState ended;
            if (failures.Length > 0)
            {
                await Task.WhenAll(hosts.Select(h => AbortQuietlyAsync(h.Host, version, rolloutId)));
                ended = _running with { Phase = RolloutPhases.Aborted, Failures = failures, EndedAt = time.GetUtcNow() };
                LogRolloutAborted(logger, Model, version, string.Join("; ", failures.Select(f => $"{f.Silo}: {f.Reason}")));
            }
            else
            {
                // Every silo has the version loaded and warm: each switches with one reference swap.
                var commits = await Task.WhenAll(hosts.Select(async h => (h.Silo, Committed: await h.Host.CommitAsync(Model, version))));
                var missed = commits.Where(c => !c.Committed).Select(c => new RolloutFailure(c.Silo, "the prepared version was gone at commit (the silo restarted?); it serves its repository's version.")).ToImmutableArray();
                ended = _running with { Phase = RolloutPhases.Committed, Failures = missed, EndedAt = time.GetUtcNow() };
                state.State.Previous = from;
                state.State.Serving = version;
                state.State.History.Add(ended);
                if (state.State.History.Count > HistoryLength)
                {
                    state.State.History.RemoveAt(0);
                }

                LogRolloutCommitted(logger, Model, from ?? "?", version);
            }

            state.State.LastRollout = ended;
            await state.WriteStateAsync();
            return ended;
        }
        finally
        {
            _running = null;
        }
    }

    private async Task AbortQuietlyAsync(IModelHostGrain host, string version, string rolloutId)
    {
        try
        {
            await host.AbortAsync(Model, version, rolloutId);
        }
        catch (Exception ex)
        {
            LogAbortFailed(logger, ex, Model, version);
        }
    }

    private RolloutState Refused(string? from, string to, string why, bool rollback)
    {
        var now = time.GetUtcNow();
        return new RolloutState(Model, from, to, RolloutPhases.Refused, [new RolloutFailure("-", why)], now, now, rollback);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Rollout of model {Model} from version {From} to {To} on {Silos} silos started")]
    private static partial void LogRolloutStarted(ILogger logger, string model, string from, string to, int silos);

    [LoggerMessage(Level = LogLevel.Information, Message = "Rollout of model {Model} from version {From} to {To} committed")]
    private static partial void LogRolloutCommitted(ILogger logger, string model, string from, string to);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rollout of model {Model} to version {To} aborted: {Failures}")]
    private static partial void LogRolloutAborted(ILogger logger, string model, string to, string failures);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Preparing version {Version} of model {Model} on silo {Silo} failed")]
    private static partial void LogPrepareFailed(ILogger logger, Exception ex, string model, string version, string silo);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Aborting version {Version} of model {Model} on a silo failed")]
    private static partial void LogAbortFailed(ILogger logger, Exception ex, string model, string version);
}

/// <summary>What a model-version grain keeps in storage.</summary>
[GenerateSerializer, Alias("StreamInfer.ModelVersionState")]
public sealed class ModelVersionState
{
    /// <summary>The committed version; null before the first rollout.</summary>
    [Id(0)]
    public string? Serving { get; set; }

    /// <summary>What served before it.</summary>
    [Id(1)]
    public string? Previous { get; set; }

    /// <summary>Committed rollouts, oldest first.</summary>
    [Id(2)]
    public List<RolloutState> History { get; set; } = [];

    /// <summary>The last rollout, whatever its end.</summary>
    [Id(3)]
    public RolloutState? LastRollout { get; set; }
}
