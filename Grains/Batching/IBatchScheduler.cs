using StreamInfer.Grains.Metrics;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// How a batcher turns its queue into work on its device: dynamic batching for batch models
/// (<see cref="DynamicBatching"/>), sequence batching for stateful models (<see cref="SequenceBatching"/>), continuous
/// batching for decoders (<see cref="ContinuousBatching"/>). Chosen once per
/// batcher, from its model (<see cref="BatchSchedulers.For"/>). Called on one thread at a time (the grain's), as are
/// the <see cref="ISchedulerHost"/> calls it makes.
/// </summary>
internal interface IBatchScheduler
{
    /// <summary>Batches (or decode loops) on the device now.</summary>
    int Running { get; }

    /// <summary>Sequences generating now (0 for batch models).</summary>
    int Active { get; }

    /// <summary>Stateful sequences whose state this batcher holds (0 for models without a sequence section).</summary>
    int Held => 0;

    /// <summary>Nothing dispatched is still on the device or being handed over.</summary>
    bool Idle { get; }

    /// <summary>Batches (or steps) run, requests run and the recent batch sizes.</summary>
    BatchStats Stats { get; }

    /// <summary>The version new requests are checked against and its options, as the catalog last said.</summary>
    void Serve(ModelOptions options, IInferenceModel model);

    /// <summary>Checks a request against <paramref name="model"/>, the version it would run on: an error, or the rows it
    /// fills and what was prepared for it (a decoder's tokenized prompt).</summary>
    SchedulerCheck Check(IInferenceModel model, BatchItem item);

    /// <summary>Whether <see cref="Check"/> may take long (a decoder tokenizes the prompt) and is thread-safe: the batcher
    /// then runs it on the thread pool before admitting the request, not on its grain's scheduler.</summary>
    bool ChecksOffScheduler => false;

    /// <summary>How long, in ms, a request filling <paramref name="rows"/> rows waits behind <paramref name="rowsAhead"/>
    /// rows before its answer.</summary>
    double ExpectedWaitMs(long rowsAhead, int rows);

    /// <summary>Starts on the device whatever is due at <paramref name="now"/>; returns when it next needs to be called
    /// if nothing else happens (<see cref="DateTimeOffset.MaxValue"/>: only on an event).</summary>
    DateTimeOffset Dispatch(DateTimeOffset now);

    /// <summary>Some running requests were flagged <see cref="QueuedRequest.Cancelled"/>.</summary>
    void Cancelled();

    /// <summary>Ends for good what would otherwise run on (a decoder's sequences): returns those not cancelled, for the
    /// caller to end. Batches on the device finish by themselves and are not returned.</summary>
    List<QueuedRequest> Abort();

    /// <summary>Completes once <see cref="Idle"/>.</summary>
    Task WhenIdleAsync();

    /// <summary>A request that passed <see cref="Check"/> was queued (a stateful sequence's bookkeeping).</summary>
    void Admitted(QueuedRequest q)
    {
    }

    /// <summary>Frees these stateful sequences of one client (once any request of theirs running has finished).</summary>
    void EndSequences(string clientId, IReadOnlyList<string> sequenceIds)
    {
    }
}

/// <summary>What a scheduler calls back on: its batcher.</summary>
internal interface ISchedulerHost
{
    /// <summary>Room came free on the device (a batch or a sequence ended): expire, dispatch and re-arm.</summary>
    void Pump();

    /// <summary>Delivers what the scheduler produced; with <paramref name="ordered"/>, after what went to the same
    /// frontends before. Ends, metrics and the sessions' completions are the host's.</summary>
    Task Finish(IReadOnlyList<RequestOutcome> outcomes, DateTimeOffset producedAt, bool ordered);

    /// <summary>Work runs that is not a grain call: keep the activation.</summary>
    void KeepAlive();
}

/// <summary>
/// A scheduler's verdict on a request: an error, or the rows it fills, its prepared decoder sequence, and the version it
/// must run on when that is not the serving one (a stateful sequence's, kept through a rollout).
/// </summary>
internal readonly record struct SchedulerCheck(InferError? Error, int Rows, PreparedSequence? Sequence = null, ModelLease? Lease = null);

/// <summary>Chooses a batcher's scheduler from its model.</summary>
internal static class BatchSchedulers
{
    /// <summary>Continuous batching for a decoder, sequence batching for a stateful model, dynamic batching for a batch
    /// model; null for a model that is none of them.</summary>
    public static IBatchScheduler? For(IInferenceModel model, ModelOptions options, BatcherContext context) => model switch
    {
        IDecoderModel decoder => new ContinuousBatching(context, options, decoder),
        IStatefulModel stateful => new SequenceBatching(context, options, stateful),
        IBatchModel batch => new DynamicBatching(context, options, batch),
        _ => null,
    };

    /// <summary>The refusal when a rollout brought a version of another kind than the one this batcher schedules.</summary>
    public static SchedulerCheck ChangedKind(string model)
        => new(new InferError(ErrorCode.ModelUnavailable, $"model '{model}' changed kind with its version; retry."), 0);

    /// <summary>The refusal of a request that names a sequence, for a model that carries no state.</summary>
    public static SchedulerCheck Stateless(string model)
        => new(new InferError(ErrorCode.InvalidInput, $"model '{model}' is stateless: a request to it names no sequence (sequence_id)."), 0);
}

/// <summary>What a scheduler works with: its batcher's key, queue, device, clock, host and metrics.</summary>
internal sealed record BatcherContext(
    BatcherKey Key,
    RequestQueue Queue,
    Devices.DeviceWorker Device,
    TimeProvider Time,
    ISchedulerHost Host,
    GridMetrics Metrics,
    Microsoft.Extensions.Logging.ILogger Logger);
