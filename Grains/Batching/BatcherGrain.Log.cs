using Microsoft.Extensions.Logging;

namespace StreamInfer.Grains.Batching;

/// <summary>The batcher's log lines.</summary>
internal sealed partial class BatcherGrain
{
    [LoggerMessage(Level = LogLevel.Warning, Message = "The batcher of model {Model} deactivated with {Count} batches still running: their requests end at their frontends' watchdogs")]
    private static partial void LogDrainCut(ILogger logger, string model, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The batcher of model {Model} still had {Count} sequences generating when its silo's drain timeout ({Timeout}) passed: they end with model_unavailable")]
    private static partial void LogDrainTimedOut(ILogger logger, string model, int count, TimeSpan timeout);
}
