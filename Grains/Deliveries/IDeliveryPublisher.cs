namespace StreamInfer.Grains.Deliveries;

/// <summary>A frontend that deliveries go to: its id (what deliveries are grouped and ordered by) and its observer.</summary>
/// <param name="Frontend">The frontend's id, as requests name it in <see cref="InferRequest.ReplyTo"/>.</param>
/// <param name="Observer">Its delivery observer (<see cref="InferRequest.ReplyObserver"/>).</param>
internal readonly record struct DeliveryTarget(string Frontend, IDeliveryObserver Observer);

/// <summary>Hands one batch of deliveries to one frontend; the <see cref="DeliveryOutbox"/> retries what fails.</summary>
internal interface IDeliveryPublisher
{
    /// <summary>Completes once <paramref name="to"/> has taken <paramref name="batch"/>; throws when it may not have.</summary>
    Task PublishAsync(DeliveryTarget to, DeliveryBatch batch);
}

/// <summary>Delivers by calling the frontend's grain observer: no stream queue sits between a batcher and a frontend
/// (docs/decisions.md, D9).</summary>
internal sealed class ObserverDeliveryPublisher : IDeliveryPublisher
{
    public Task PublishAsync(DeliveryTarget to, DeliveryBatch batch) => to.Observer.DeliverAsync(batch);
}
