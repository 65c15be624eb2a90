namespace StreamInfer;

/// <summary>
/// A frontend's delivery endpoint: an Orleans grain observer the frontend creates once (an object reference to its
/// router) and names in every request it submits (<see cref="InferRequest.ReplyObserver"/>). A batcher calls it
/// directly, once per batch step per destination frontend: no stream queue, and so no third silo, sits between the
/// batcher and the frontend (docs/decisions.md, D9).
/// </summary>
[Alias("StreamInfer.IDeliveryObserver")]
public interface IDeliveryObserver : IGrainObserver
{
    /// <summary>
    /// Hands a batch step's deliveries to the frontend. Completes once the frontend has taken them (handed them to the
    /// connections they belong to): a completed call means delivered. A failed or timed-out call may or may not have
    /// been delivered; the caller retries, and the frontend ignores what it already has (an end for a request that
    /// already ended, a token whose index it already wrote). Calls from one batcher to one frontend are made one at a
    /// time, so their order is the order of the steps.
    /// The answer of a call can be lost with a gateway that dies (it travels through whichever gateway the client
    /// picked for the batcher), so the timeout is short: a lost answer costs a retry a second later.
    /// </summary>
    [Alias("Deliver"), ResponseTimeout("00:00:01")]
    Task DeliverAsync(DeliveryBatch batch);
}
