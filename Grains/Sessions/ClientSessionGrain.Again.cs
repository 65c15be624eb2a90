namespace StreamInfer.Grains.Sessions;

/// <summary>
/// Submits that come again: a frontend sends a request a second time when the connection its first call went out on
/// closed before the answer (docs/decisions.md D22), so either copy may arrive first, or both. Every copy gets the
/// answer the first got, and nothing runs twice.
/// </summary>
internal sealed partial class ClientSessionGrain
{
    private readonly Dictionary<string, Task<Admission>> _admitting = new(StringComparer.Ordinal);
    private RecentAnswers? _recent;

    private RecentAnswers Recent => _recent ??= new RecentAnswers(time);

    /// <summary>
    /// The answer to a request id seen before, or null for a new one: the first copy's answer while it is being admitted;
    /// accepted again with its batcher's silo once it is held here; a refusal it got, again; accepted without a silo if it
    /// ended here a moment ago (its delivery is on its way or arrived).
    /// </summary>
    private Task<Admission>? Again(string requestId)
    {
        if (_admitting.TryGetValue(requestId, out var admitting))
        {
            return admitting;
        }

        if (_backlog.Entries.TryGetValue(requestId, out var pending))
        {
            return Task.FromResult(new Admission(null, null, pending.Deadline - pending.Item.AdmittedAt, pending.Batcher.Silo));
        }

        return _recent is { } recent && recent.TryGet(requestId, out var answer) ? Task.FromResult(answer) : null;
    }

    /// <summary>Awaits a new request's admission, letting copies that arrive meanwhile wait for the same answer; a
    /// refusal is kept for the copies that come after it.</summary>
    private async Task<Admission> Answer(string requestId, Task<Admission> admission)
    {
        if (!admission.IsCompleted)
        {
            _admitting[requestId] = admission;
            try
            {
                await admission;
            }
            finally
            {
                _admitting.Remove(requestId);
            }
        }

        var answer = await admission;
        if (!answer.Accepted)
        {
            Recent.Refused(requestId, answer);
        }

        return answer;
    }
}
