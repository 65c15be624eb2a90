using StreamInfer.Frontend.Requests;
using StreamInfer.Grains.Metrics;

namespace StreamInfer.Frontend.Routing;

/// <summary>
/// This frontend's delivery endpoint: batchers call it as a grain observer (<see cref="IDeliveryObserver"/>, named in
/// every request through <see cref="FrontendIdentity.Observer"/>), and it hands each <see cref="DeliveryBatch"/>'s
/// items to the requests in flight they belong to.
/// </summary>
internal sealed partial class DeliveryRouter(
    IClusterClient client,
    FrontendIdentity identity,
    RequestTable requests,
    GridMetrics metrics,
    TimeProvider time,
    ILogger<DeliveryRouter> logger) : IHostedService, IDeliveryObserver
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        // This singleton holds the object strongly; Orleans keeps only a weak reference to it.
        identity.Observer = client.CreateObjectReference<IDeliveryObserver>(this);
        LogReady(logger, identity.Id);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        if (identity.Observer is { } observer)
        {
            identity.Observer = null;
            client.DeleteObjectReference<IDeliveryObserver>(observer);
        }

        return Task.CompletedTask;
    }

    /// <summary>A batcher's call: every item goes to its request.</summary>
    public Task DeliverAsync(DeliveryBatch batch)
    {
        if (batch.ProducedAt != default)
        {
            metrics.Arrived((time.GetUtcNow() - batch.ProducedAt).TotalSeconds);
        }

        foreach (var delivery in batch.Items)
        {
            try
            {
                requests.Deliver(delivery, batch.ProducedAt);
            }
            catch (Exception ex)
            {
                // One item that cannot be handed over must not hold back its batch-mates.
                LogDeliverFailed(logger, ex, delivery.ClientId, delivery.RequestId);
            }
        }

        return Task.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Handing the answer to {RequestId} to client {ClientId} failed")]
    private static partial void LogDeliverFailed(ILogger logger, Exception ex, string clientId, string requestId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Frontend {FrontendId} receives deliveries through its observer")]
    private static partial void LogReady(ILogger logger, string frontendId);
}

/// <summary>This frontend's identity: named in every request's ReplyTo and ReplyObserver.</summary>
internal sealed class FrontendIdentity
{
    /// <summary>The frontend's id: groups deliveries.</summary>
    public string Id { get; } = $"fe-{Guid.NewGuid():N}";

    /// <summary>The frontend's delivery observer, set at start.</summary>
    public IDeliveryObserver? Observer { get; set; }
}
