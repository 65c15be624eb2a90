using Microsoft.Extensions.Logging;

namespace StreamInfer.Grains.Models.Versions;

/// <summary>
/// The models' start-up on a silo, in order: the built-in models are written, the repository is scanned and every model
/// registered (before the silo joins, so every name is known to the first request), then models load and warm up in
/// the background, becoming ready one by one, and the silo catches up with rollouts committed while it was away. The
/// silo's start is not held up by the loading: the health endpoints say ready once all have loaded (or failed).
/// </summary>
internal sealed partial class ModelStartup(
    BuiltInModels builtIns,
    RepositorySync repository,
    ModelCatalog catalog,
    ModelRollout rollout,
    IGrainFactory grains,
    ILogger<ModelStartup> logger) : ILifecycleParticipant<ISiloLifecycle>, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();

    public void Participate(ISiloLifecycle lifecycle)
        => lifecycle.Subscribe(nameof(ModelStartup), ServiceLifecycleStage.ApplicationServices, OnStart, OnStop);

    private Task OnStart(CancellationToken cancellationToken)
    {
        builtIns.EnsureWritten();
        var pending = repository.Register();
        _ = Task.Run(
            async () =>
        {
            try
            {
                await repository.LoadAsync(pending, _stopping.Token);
                await CatchUpWithRolloutsAsync(_stopping.Token);
            }
            catch (OperationCanceledException)
            {
            }
            catch (Exception ex)
            {
                LogLoadFailed(logger, ex);
            }
        },
            CancellationToken.None);
        return Task.CompletedTask;
    }

    private Task OnStop(CancellationToken cancellationToken)
    {
        _stopping.Cancel();
        return Task.CompletedTask;
    }

    /// <summary>
    /// A silo that starts after a rollout committed (a new silo, a restart) serves the committed version, not whatever
    /// its repository scan chose: each repository model's version grain is asked, and a differing version is prepared
    /// and committed here. The grains answer once the silo has joined, so failures are retried for a minute.
    /// </summary>
    private async Task CatchUpWithRolloutsAsync(CancellationToken cancellationToken)
    {
        foreach (var (name, version) in catalog.RepositoryModels)
        {
            string? serving = null;
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    serving = await grains.GetGrain<IModelVersionGrain>(name).GetServingVersionAsync();
                    break;
                }
                catch (Exception ex) when (ex is not OperationCanceledException && attempt < 60)
                {
                    LogVersionAskFailed(logger, ex, name);
                    await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
                }
            }

            if (serving is null || serving == version)
            {
                continue;
            }

            var problems = await rollout.PrepareAsync(name, serving, cancellationToken: cancellationToken);
            if (problems.IsEmpty && rollout.Commit(name, serving))
            {
                LogCaughtUp(logger, name, serving, version);
            }
            else
            {
                LogCatchUpFailed(logger, name, serving, string.Join("; ", problems));
            }
        }
    }

    public void Dispose() => _stopping.Dispose();

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model}: serving the committed version {Version}, not the scanned {Scanned}")]
    private static partial void LogCaughtUp(ILogger logger, string model, string version, string scanned);

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Model}: the committed version {Version} cannot be served here: {Problems}")]
    private static partial void LogCatchUpFailed(ILogger logger, string model, string version, string problems);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Model {Model}: asking for its committed version failed; retrying")]
    private static partial void LogVersionAskFailed(ILogger logger, Exception ex, string model);

    [LoggerMessage(Level = LogLevel.Error, Message = "Loading the model repository failed")]
    private static partial void LogLoadFailed(ILogger logger, Exception ex);
}
