using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Placement;

namespace StreamInfer.Grains.Sessions;

/// <summary>
/// The session's stateful sequences. A sequence's start goes to a batcher chosen as for any request, and pins the
/// sequence there; its session forwards at most one of its requests at a time, so the batcher never holds two of one
/// sequence and runs them in the order the session forwarded them. An ordered request (WebSocket, gRPC stream) that
/// arrives while its sequence's previous one has not ended waits here, admitted, in the backlog and under its deadline,
/// and goes once that one ends, however it ended; an unordered one is refused <see cref="ErrorCode.SequenceBusy"/>.
/// </summary>
internal sealed partial class ClientSessionGrain
{
    private readonly Dictionary<string, SessionSequence> _sequences = new(StringComparer.Ordinal);

    /// <summary>
    /// Where a sequence's request goes: refused, held behind the sequence's running request, forwarded to the batcher
    /// that holds the sequence, or (a start of a sequence not running here) to a batcher chosen afresh.
    /// </summary>
    private readonly record struct SequenceRoute(InferError? Refusal = null, SessionSequence? Sequence = null, bool Hold = false, bool Fresh = false);

    /// <summary>
    /// Routes a request of a sequence; <paramref name="model"/> is null when a held request is routed again (its model
    /// was checked at admission), and <paramref name="advancing"/> the sequence whose queue is being worked through.
    /// </summary>
    private SequenceRoute RouteSequence(InferRequest request, ModelEntry? model, SessionSequence? advancing = null)
    {
        var control = request.Sequence!;
        if (model is { Kind: ModelKind.Decoder })
        {
            return new(new InferError(ErrorCode.InvalidInput, $"model '{model.Name}' is a decoder: sequences are for stateful tensor models."));
        }

        if (model is { Options.Sequence: null })
        {
            return new(new InferError(ErrorCode.InvalidInput, $"model '{model.Name}' keeps no state between requests: send its requests without sequence_id."));
        }

        var now = time.GetUtcNow();
        if (_sequences.TryGetValue(control.Id, out var stuck) && Orphaned(stuck, now) && stuck != advancing)
        {
            // What waited behind the orphan was sent before this request: it is routed first.
            Advance(stuck);
        }

        string? lostWith = null;
        if (_sequences.TryGetValue(control.Id, out var sequence) && !SiloActive(sequence.Batcher.Silo))
        {
            lostWith = sequence.Batcher.Silo;
            Lose(sequence);
            if (sequence != advancing)
            {
                // What waited behind the lost one was sent before this request: it is routed first.
                Advance(sequence);
            }

            sequence = _sequences.GetValueOrDefault(control.Id);
        }

        if (sequence is null)
        {
            if (!control.Start)
            {
                return new(UnknownSequence(control.Id, lostWith));
            }

            return _sequences.Count < _options.MaxSequences || Prune(now) > 0
                ? new(Fresh: true)
                : new(new InferError(ErrorCode.BadRequest, $"the client has {_sequences.Count} sequences open, its limit; end one (sequence_end) before starting another."));
        }

        if (sequence.Running is not null)
        {
            if (control.Ordered)
            {
                return new(Sequence: sequence, Hold: true);
            }

            return new(control.Start
                ? new InferError(ErrorCode.SequenceExists, $"sequence '{control.Id}' is already running; end it (sequence_end) before starting it again, or use a new id.")
                : new InferError(ErrorCode.SequenceBusy, $"sequence '{control.Id}' has a request that has not finished; send its requests one after another (a WebSocket connection or a gRPC stream keeps them in order)."));
        }

        if (sequence.Model != request.Model)
        {
            return new(new InferError(ErrorCode.BadRequest, $"sequence '{control.Id}' runs on model '{sequence.Model}'; every request of it must name that model."));
        }

        // A start of a sequence known here goes to its batcher too: only the batcher knows whether it expired meanwhile
        // (a fresh start there) or still runs (sequence_exists).
        return new(Sequence: sequence);
    }

    private static InferError UnknownSequence(string id, string? lostWith) => new(ErrorCode.UnknownSequence, lostWith is null
        ? $"no sequence '{id}' is running for this client: start it with sequence_start (it may never have started, or have ended, expired or been lost)."
        : $"sequence '{id}' was lost: silo '{lostWith}', which held its state, left the cluster; start the sequence again.");

    private SessionSequence Begin(string id, string model, BatcherKey batcher)
    {
        var sequence = new SessionSequence(id, model, batcher, time.GetUtcNow());
        _sequences[id] = sequence;
        return sequence;
    }

    /// <summary>
    /// Whether the sequence's running request passed its deadline more than the orphan grace ago with no completion (its
    /// batcher's word of it was lost); if so it is reclaimed, and the sequence's waiting requests may go.
    /// </summary>
    private bool Orphaned(SessionSequence sequence, DateTimeOffset now)
    {
        if (sequence.Running is not { } id || !_backlog.Entries.TryGetValue(id, out var running) || running.Deadline >= now - _options.OrphanGrace)
        {
            return false;
        }

        _backlog.Remove(id, out _);
        sequence.Running = null;
        LogOrphan(logger, ClientId, id, sequence.Batcher.ToString());
        return true;
    }

    /// <summary>
    /// Forgets the sequences with nothing in flight that have been idle past their model's idle timeout: their batcher
    /// expired them (its idle clock started no earlier than this session's). Returns how many were forgotten.
    /// </summary>
    private int Prune(DateTimeOffset now)
    {
        var stale = _sequences.Values
            .Where(s => s.Idle && (!catalog.TryGet(s.Model, out var model) || model.Options.Sequence is not { } options || s.LastActive + options.IdleTimeout < now))
            .ToList();
        foreach (var sequence in stale)
        {
            Forget(sequence);
        }

        return stale.Count;
    }

    private void Forget(SessionSequence sequence)
    {
        if (_sequences.TryGetValue(sequence.Id, out var known) && known == sequence)
        {
            _sequences.Remove(sequence.Id);
        }
    }

    /// <summary>The sequence's silo left: it is forgotten, and its running request will not complete (the frontend
    /// ends it on the silo's loss). Its waiting requests stay queued for the caller to route again.</summary>
    private void Lose(SessionSequence sequence)
    {
        Forget(sequence);
        if (sequence.Running is { } running)
        {
            _backlog.Remove(running, out _);
            sequence.Running = null;
        }

        LogSequenceLost(logger, ClientId, sequence.Id, sequence.Batcher.Silo);
    }

    /// <summary>Whether the silo named (as in batcher keys) is an active member of the cluster.</summary>
    private bool SiloActive(string silo)
    {
        foreach (var member in membership.CurrentSnapshot.Members.Values)
        {
            if (member.Status == SiloStatus.Active && SiloNames.ForKey(member.Name) == silo)
            {
                return true;
            }
        }

        return false;
    }

    private void Hold(Pending pending, SessionSequence sequence)
    {
        pending.Held = true;
        pending.Sequence = sequence;
        pending.Batcher = sequence.Batcher;
        sequence.Waiting.Enqueue(pending.Id);
        ArmExpiry(pending.Deadline);
    }

    /// <summary>
    /// A forwarded request ended (<paramref name="completed"/>: its batcher reported it; else cancelled or reclaimed):
    /// if it was its sequence's running one, the next waiting one goes. A sequence whose end completed is forgotten.
    /// </summary>
    private void Ended(Pending pending, bool completed)
    {
        if (pending.Held || pending.Sequence is not { } sequence || sequence.Running != pending.Id)
        {
            return;
        }

        sequence.Running = null;
        sequence.LastActive = time.GetUtcNow();
        if (completed && pending.Item.Request.Sequence!.End)
        {
            Forget(sequence);
        }

        Advance(sequence);
    }

    /// <summary>
    /// The batcher took a request of the sequence. If the session closed meanwhile (its sequences were ended before
    /// this one reached the batcher), the request is cancelled and the sequence ended there, and the caller hears the
    /// session closed.
    /// </summary>
    private async Task<(InferError? Refusal, bool MayBeHeld)> SequenceAcceptedAsync(Pending pending, SessionSequence sequence)
    {
        sequence.Confirmed = true;
        sequence.LastActive = time.GetUtcNow();
        if (!_closed)
        {
            return (null, false);
        }

        var batcherKey = pending.Batcher.ToString();
        await CancelAtBatcherAsync(batcherKey, [pending.Id]);
        await EndAtBatcherAsync(batcherKey, [sequence.Id]);
        return (SessionClosed, false);
    }

    /// <summary>
    /// The batcher refused a request of a sequence, or could not be reached. A sequence that did not start, or that
    /// its batcher no longer knows, is forgotten; a later request of a sequence whose silo left ends with
    /// <see cref="ErrorCode.UnknownSequence"/>. A start the session took for new that meets a sequence the batcher
    /// still holds (left by this session's earlier activation, or by a start whose answer was lost) ends that sequence:
    /// its state is not the client's. Either way the sequence's next waiting request goes.
    /// </summary>
    private async Task<InferError> SequenceRefusedAsync(Pending pending, SessionSequence sequence, InferError refusal, bool siloLost)
    {
        var control = pending.Item.Request.Sequence!;
        if (control.Start && !sequence.Confirmed && refusal.Code == ErrorCode.SequenceExists)
        {
            // Still running here while the end is on its way: nothing else of this id reaches the batcher before it.
            await EndAtBatcherAsync(sequence.Batcher.ToString(), [control.Id]);
            refusal = new InferError(ErrorCode.SequenceExists, $"sequence '{control.Id}' was still held by its batcher from a start this session had lost track of; that sequence has been ended: send the start again.");
            Forget(sequence);
        }
        else if (!control.Start && (siloLost || !SiloActive(sequence.Batcher.Silo)))
        {
            refusal = UnknownSequence(control.Id, sequence.Batcher.Silo);
            Forget(sequence);
        }
        else if (refusal.Code == ErrorCode.UnknownSequence || (control.Start && refusal.Code != ErrorCode.SequenceExists))
        {
            Forget(sequence);
        }

        if (sequence.Running == pending.Id)
        {
            sequence.Running = null;
        }

        Advance(sequence);
        return refusal;
    }

    /// <summary>
    /// While the sequence has no request at its batcher, routes its waiting requests in order: the first that may go is
    /// forwarded; the others fail, or wait behind whichever sequence now bears the id.
    /// </summary>
    private void Advance(SessionSequence sequence)
    {
        while (sequence.Running is null && !_closed && sequence.Waiting.TryDequeue(out var id))
        {
            if (!_backlog.Entries.TryGetValue(id, out var pending) || !pending.Held)
            {
                continue;
            }

            var request = pending.Item.Request;
            if (!catalog.TryGet(request.Model, out var model))
            {
                Fail(pending, new InferError(ErrorCode.UnknownModel, $"model '{request.Model}' is no longer served."));
                continue;
            }

            if (Unavailable(model) is { } unavailable)
            {
                Fail(pending, unavailable);
                continue;
            }

            var route = RouteSequence(request, null, sequence);
            if (route.Refusal is { } refusal)
            {
                Fail(pending, refusal);
                continue;
            }

            if (route.Hold)
            {
                Hold(pending, route.Sequence!);
                continue;
            }

            var target = route.Sequence ?? Begin(request.Sequence!.Id, model.Name, Choose(model));
            pending.Held = false;
            pending.Sequence = target;
            pending.Batcher = target.Batcher;

            // Marks the target running before its first await, which ends this loop when the target is this sequence.
            _ = ForwardHeldAsync(pending);
        }
    }

    /// <summary>Forwards a request that waited; it was admitted, so a refusal now is its end, delivered from here.</summary>
    private async Task ForwardHeldAsync(Pending pending)
    {
        var (refusal, _) = await ForwardAsync(pending);
        if (refusal is not null)
        {
            Deliver(pending.Item.Request, refusal);
        }
    }

    /// <summary>Ends a request that waited and was never forwarded: it leaves the backlog, and its end is delivered.</summary>
    private void Fail(Pending pending, InferError error)
    {
        _backlog.Remove(pending.Id, out _);
        Recent.Ended(pending.Id);
        RefundIfTheGrids(error);
        metrics.Refused(pending.Item.Request.Model, error.Code);
        Deliver(pending.Item.Request, error);
    }

    private void Deliver(InferRequest request, InferError error)
    {
        if (request.ReplyObserver is { } observer)
        {
            _ = DeliverAsync(observer, new DeliveryBatch([new Delivery(ClientId, request.RequestId, null, error)], time.GetUtcNow()));
        }
    }

    private async Task DeliverAsync(IDeliveryObserver observer, DeliveryBatch batch)
    {
        try
        {
            await observer.DeliverAsync(batch);
        }
        catch (Exception ex)
        {
            // The frontend's watchdog ends the request at its deadline.
            LogDeliverFailed(logger, ex, ClientId);
        }
    }

    public Task EndSequencesAsync(ImmutableArray<string> sequenceIds)
    {
        var ending = new List<SessionSequence>();
        foreach (var id in sequenceIds)
        {
            if (_sequences.TryGetValue(id, out var sequence))
            {
                Forget(sequence);
                ending.Add(sequence);
            }
        }

        return ending.Count == 0 ? Task.CompletedTask : EndAtBatchersAsync(ending.ToLookup(s => s.Batcher.ToString(), s => s.Id));
    }

    /// <summary>Ends sequences (grouped by batcher key) at their batchers, skipping those on silos that left: their
    /// state went with the silo, and a call would only activate a batcher placed elsewhere.</summary>
    private Task EndAtBatchersAsync(ILookup<string, string> sequences)
        => Task.WhenAll(sequences.Where(g => SiloActive(BatcherKey.Parse(g.Key).Silo)).Select(g => EndAtBatcherAsync(g.Key, [.. g])));

    private async Task EndAtBatcherAsync(string batcherKey, ImmutableArray<string> sequenceIds)
    {
        try
        {
            await GrainFactory.GetGrain<IBatcherGrain>(batcherKey).EndSequencesAsync(ClientId, sequenceIds);
        }
        catch (Exception ex)
        {
            // Its state expires at the batcher's idle timeout all the same.
            LogEndFailed(logger, ex, batcherKey);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Client {ClientId}: sequence {SequenceId} was lost with silo {Silo}")]
    private static partial void LogSequenceLost(ILogger logger, string clientId, string sequenceId, string silo);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId}: delivering an end from the session failed")]
    private static partial void LogDeliverFailed(ILogger logger, Exception ex, string clientId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Ending sequences at batcher {Batcher} failed")]
    private static partial void LogEndFailed(ILogger logger, Exception ex, string batcher);
}
