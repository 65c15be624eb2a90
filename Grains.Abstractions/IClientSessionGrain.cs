using System.Collections.Immutable;
using Orleans.Concurrency;

namespace StreamInfer;

/// <summary>
/// One connected client (a WebSocket connection, or an HTTP caller identified by its client id). Owns the client's
/// token bucket, its bounded backlog of unfinished requests, their deadlines, and their cancellation.
/// </summary>
[Alias("StreamInfer.IClientSessionGrain")]
public interface IClientSessionGrain : IGrainWithStringKey
{
    /// <summary>
    /// Admits a request and forwards it to a batcher of its model. Refusals, in the order they are checked:
    /// <see cref="ErrorCode.BadRequest"/> (session closed), <see cref="ErrorCode.UnknownModel"/>,
    /// <see cref="ErrorCode.ModelUnavailable"/> (loading or failed), <see cref="ErrorCode.BacklogFull"/>,
    /// <see cref="ErrorCode.RateLimited"/> (with the exact wait until a token is available), then whatever the batcher
    /// refuses with (<see cref="ErrorCode.InvalidInput"/>, <see cref="ErrorCode.Overloaded"/>,
    /// <see cref="ErrorCode.ModelUnavailable"/>). A refused request costs no token and no backlog slot and produces no
    /// delivery. An accepted one ends in exactly one <see cref="Delivery"/> to the frontend the request names.
    /// <see cref="Admission.Warning"/> may come with an acceptance or a refusal.
    /// Idempotent, for a caller that sends a request again when the first call may have been lost (its connection to the
    /// gateway it went through closed before an answer): before anything is checked or taken, a copy of a request being
    /// admitted gets the same answer, one the session holds is accepted again naming its batcher's silo, one refused in the
    /// last seconds gets the same refusal, and one that ended here (its delivery is on its way or arrived) is accepted
    /// without a silo; nothing runs twice. Callers therefore never reuse an id
    /// for another request. The request's <see cref="InferRequest.Limits"/>
    /// (its API key's) apply from it on, before anything is checked; a priority above their ceiling is lowered to it.
    /// <para>
    /// A request of a stateful sequence (<see cref="InferRequest.Sequence"/>) is checked, after the model, against the
    /// session's sequences: <see cref="ErrorCode.InvalidInput"/> on a decoder, <see cref="ErrorCode.UnknownSequence"/>
    /// for a sequence that is not running here (or was lost with its silo), <see cref="ErrorCode.SequenceExists"/> and
    /// <see cref="ErrorCode.SequenceBusy"/> for an unordered start or request while the sequence has a request
    /// unfinished, <see cref="ErrorCode.BadRequest"/> for another model than its start's. It goes to the batcher its
    /// start went to, at most one of the sequence at a time: an ordered one that arrives meanwhile is accepted and waits
    /// here (in the backlog, under its deadline) until the previous one ends; its <see cref="Admission.Silo"/> is that
    /// batcher's, and a refusal when it is forwarded is delivered as its end. Callers submit a sequence's ordered
    /// requests one after another, each once the previous one's admission has answered.
    /// </para>
    /// </summary>
    [Alias("Submit")]
    Task<Admission> SubmitAsync(InferRequest request);

    /// <summary>
    /// Cancels a request in flight. Returns null when the id was in flight (its slot is released; the batcher drops
    /// it, or discards its result if it is already running), or a <see cref="ErrorCode.BadRequest"/> error for an
    /// unknown id. The caller tells the client; no delivery follows for a cancelled request.
    /// </summary>
    [Alias("Cancel")]
    Task<InferError?> CancelAsync(string requestId);

    /// <summary>The client disconnected: cancel everything in flight, release the backlog, and end the client's
    /// sequences at their batchers (<see cref="IBatcherGrain.EndSequencesAsync"/>). Idempotent.</summary>
    [Alias("Close")]
    Task CloseAsync();

    /// <summary>The client is done with these sequences without having ended them (the stream that carried them
    /// closed): the session forgets them and their batchers free their state once nothing of theirs is running. Their
    /// requests still in flight end as they would have; ids the session does not know are ignored. Idempotent.</summary>
    [Alias("EndSequences")]
    Task EndSequencesAsync(ImmutableArray<string> sequenceIds);

    /// <summary>
    /// Called by batchers, once per batch per session, when requests end (result, error or expiry) so the backlog
    /// frees. Interleaves with everything else, so a batcher's call never waits behind a submit that is itself
    /// waiting on that batcher (a deadlock otherwise). Unknown ids are ignored.
    /// </summary>
    [Alias("Completed"), AlwaysInterleave]
    Task CompletedAsync(ImmutableArray<string> requestIds);

    /// <summary>The session's backlog and token bucket now.</summary>
    [Alias("GetStatus"), AlwaysInterleave]
    Task<SessionStatus> GetStatusAsync();
}
