using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Placement;

/// <summary>
/// A silo that shuts down gracefully drains its batchers first, at the start of Orleans' stop sequence (the
/// <see cref="ServiceLifecycleStage.Active"/> stage), while it can still reach every frontend: it stops taking work
/// (<see cref="ClusterLoad.Draining"/>), ends what is only queued with a retryable <c>model_unavailable</c>, and lets
/// running batches and generations finish and be delivered, up to <see cref="PlacementOptions.DrainTimeout"/>. Later in
/// the stop sequence a silo can no longer look up a client's gateway, so deliveries made from grain deactivation would
/// be lost (docs/decisions.md D9).
/// </summary>
internal sealed partial class SiloDrain(
    ClusterLoad load,
    IGrainFactory grains,
    IOptions<PlacementOptions> options,
    ILogger<SiloDrain> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    public void Participate(ISiloLifecycle lifecycle)
        => lifecycle.Subscribe(nameof(SiloDrain), ServiceLifecycleStage.Active, _ => Task.CompletedTask, StopAsync);

    private async Task StopAsync(CancellationToken cancellationToken)
    {
        load.Draining = true;
        var started = Stopwatch.GetTimestamp();
        var batchers = load.LocalBatchers.ToArray();
        var timeout = options.Value.DrainTimeout;
        await Task.WhenAll(batchers.Select(key => DrainOneAsync(key, timeout, cancellationToken)));
        LogDrained(logger, batchers.Length, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    private async Task DrainOneAsync(string key, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await grains.GetGrain<IBatcherGrain>(key).DrainAsync(timeout).WaitAsync(cancellationToken);
        }
        catch (Exception ex)
        {
            // What it still held ends at its deactivation, or at the frontends' watchdogs.
            LogDrainFailed(logger, ex, key);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Drained {Count} batchers for shutdown in {Ms:F0} ms")]
    private static partial void LogDrained(ILogger logger, int count, double ms);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Draining batcher {Batcher} failed")]
    private static partial void LogDrainFailed(ILogger logger, Exception ex, string batcher);
}
