using Microsoft.Extensions.Logging;

namespace StreamInfer.Grains.Models;

/// <summary>
/// Starts loading the model repository when the silo starts, without holding the silo's start up: models become
/// ready one by one, and the health endpoints say ready only when all have loaded (or failed).
/// </summary>
internal sealed partial class ModelLoader(ModelCatalog catalog, ILogger<ModelLoader> logger) : ILifecycleParticipant<ISiloLifecycle>, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();

    public void Participate(ISiloLifecycle lifecycle)
        => lifecycle.Subscribe(nameof(ModelLoader), ServiceLifecycleStage.ApplicationServices, OnStart, OnStop);

    private Task OnStart(CancellationToken cancellationToken)
    {
        _ = Task.Run(
            async () =>
        {
            try
            {
                await catalog.LoadAsync(_stopping.Token);
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

    public void Dispose() => _stopping.Dispose();

    [LoggerMessage(Level = LogLevel.Error, Message = "Loading the model repository failed")]
    private static partial void LogLoadFailed(ILogger logger, Exception ex);
}
