namespace StreamInfer.Grains.Sessions;

/// <summary>
/// Submits that come again: a frontend sends a request a second time when the connection its first call went out on
/// closed before the answer (docs/decisions.md D22), so either copy may arrive first, or both.
/// </summary>
internal sealed partial class ClientSessionGrain
{
    /// <summary>
    /// Ids of requests that ended here lately. A copy comes within moments of its first (when the caller's gateway
    /// connection closes), so a few hundred cover every request a client can have had end in that time.
    /// </summary>
    private readonly RecentIds _ended = new(256);

    /// <summary>
    /// The answer to a request id seen before: held here, it is accepted again with its batcher's silo; ended a moment
    /// ago, accepted without one (its delivery is on its way or arrived). Null for an id not seen: a new request.
    /// </summary>
    private Admission? Again(string requestId)
    {
        if (_backlog.Entries.TryGetValue(requestId, out var pending))
        {
            return new Admission(null, null, pending.Deadline - pending.Item.AdmittedAt, pending.Batcher.Silo);
        }

        return _ended.Contains(requestId) ? new Admission(null, null) : null;
    }
}
