using System.Collections.Immutable;
using Orleans.Concurrency;

namespace StreamInfer;

/// <summary>
/// The dynamic batcher of one model on one device of one silo; its key is a <see cref="BatcherKey"/>. Queues requests,
/// flushes a batch when <c>MaxBatchSize</c> are queued or <c>MaxWait</c> has passed since the oldest queued one, runs it
/// on the device's worker thread, and delivers the results as one <see cref="DeliveryBatch"/> per destination
/// frontend (decoders: continuous batching, a step's tokens at a time).
/// </summary>
[Alias("StreamInfer.IBatcherGrain")]
public interface IBatcherGrain : IGrainWithStringKey
{
    /// <summary>
    /// Queues a request. Returns null when queued (its end follows through the request's delivery observer and the session is told through <see cref="IClientSessionGrain.CompletedAsync"/>), or the refusal:
    /// <see cref="ErrorCode.InvalidInput"/>, <see cref="ErrorCode.Overloaded"/> (queue full, with retry_after_ms),
    /// <see cref="ErrorCode.BadRequest"/> (the same client already has that id queued here).
    /// </summary>
    [Alias("Enqueue")]
    Task<InferError?> EnqueueAsync(BatchItem item);

    /// <summary>
    /// Drops these requests of one client: queued ones are removed, running ones have their results discarded. Nothing
    /// more is delivered for them; the session is not called back (it already released them). Unknown ids are ignored.
    /// </summary>
    [Alias("Cancel"), AlwaysInterleave]
    Task CancelAsync(string clientId, ImmutableArray<string> requestIds);

    /// <summary>
    /// Ends these stateful sequences of one client (its session closed, or the client cancelled a sequence): their
    /// state is freed once any request of theirs that is running has finished. Their requests still queued end with
    /// <see cref="ErrorCode.UnknownSequence"/> when the batcher next cuts a batch (unless the session cancelled them
    /// first with <see cref="CancelAsync"/>). Unknown ids are ignored.
    /// </summary>
    [Alias("EndSequences"), AlwaysInterleave]
    Task EndSequencesAsync(string clientId, ImmutableArray<string> sequenceIds);

    /// <summary>
    /// Takes this batcher out of service because its silo is shutting down: queued requests end at once with
    /// <see cref="ErrorCode.ModelUnavailable"/> (their clients may retry: the other silos serve), later enqueues are
    /// refused the same way, and batches and sequences already running finish and are delivered. What still runs after
    /// <paramref name="timeout"/> ends with <see cref="ErrorCode.ModelUnavailable"/>. Completes when everything it held
    /// has been delivered (or its delivery has failed). Calling it again waits again.
    /// </summary>
    [Alias("Drain"), ResponseTimeout("00:10:30")] // Placement:DrainTimeout's maximum (10 min) and a retry budget.
    Task DrainAsync(TimeSpan timeout);

    /// <summary>Queue depth, batches in flight and recent batch sizes.</summary>
    [Alias("GetStatus"), AlwaysInterleave]
    Task<BatcherStatus> GetStatusAsync();
}
