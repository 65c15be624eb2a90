using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace StreamInfer.LoadGen;

/// <summary>
/// What a slot learns about its request: answered (maybe with a back-off), overdue, or lost with the connection.
/// <see cref="Failed"/>: an error answer, or none in time; a sequence's slot then starts a new sequence.
/// </summary>
internal readonly record struct SlotAnswer(bool Lost, double RetryAfterMs, bool Failed = false)
{
    public static SlotAnswer Overdue => new(Lost: false, 0, Failed: true);

    public static SlotAnswer ConnectionLost => new(Lost: true, 0);
}

/// <summary>A request in flight: when it was sent, and the slot waiting for it.</summary>
internal sealed class PendingRequest(long sentAt) : TaskCompletionSource<SlotAnswer>(TaskCreationOptions.RunContinuationsAsynchronously)
{
    public long SentAt { get; } = sentAt;
}

/// <summary>The requests in flight on one connection whose answers come back by id, in any order.</summary>
internal sealed class InFlight
{
    private readonly ConcurrentDictionary<long, PendingRequest> _requests = new();

    /// <summary>Registers request <paramref name="id"/> as sent now; call before sending, since the answer may come first.</summary>
    public PendingRequest Add(long id)
    {
        var request = new PendingRequest(Stopwatch.GetTimestamp());
        _requests[id] = request;
        return request;
    }

    /// <summary>Forgets a request whose send failed.</summary>
    public void Remove(long id) => _requests.TryRemove(id, out _);

    /// <summary>Takes the request an answer is for; false for an id never sent or already answered.</summary>
    public bool TryTake(long id, [MaybeNullWhen(false)] out PendingRequest request) => _requests.TryRemove(id, out request);

    /// <summary>
    /// Lets the slots whose request has waited longer than <paramref name="timeout"/> move on; returns how many. The
    /// request stays in flight: an answer may still come (and is then measured), and if none does it counts as
    /// unanswered at the end.
    /// </summary>
    public int ExpireOverdue(long now, TimeSpan timeout)
    {
        var oldest = now - (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        var expired = 0;
        foreach (var (_, request) in _requests)
        {
            if (request.SentAt < oldest && request.TrySetResult(SlotAnswer.Overdue))
            {
                expired++;
            }
        }

        return expired;
    }

    /// <summary>Removes every request in flight and stops its slot; returns how many there were.</summary>
    public int Drain()
    {
        var drained = 0;
        foreach (var id in _requests.Keys)
        {
            if (_requests.TryRemove(id, out var request))
            {
                drained++;
                request.TrySetResult(SlotAnswer.ConnectionLost);
            }
        }

        return drained;
    }
}
