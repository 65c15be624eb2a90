namespace StreamInfer.Grains.Sessions;

/// <summary>
/// What a session answered lately, by request id: the refusals it gave and the requests that ended, kept for
/// <see cref="Window"/> and at most <see cref="Capacity"/> of them (the oldest go first), so that a copy of a request
/// (docs/decisions.md D22) gets the answer its first got instead of running. Not thread-safe: owned by one grain.
/// </summary>
internal sealed class RecentAnswers(TimeProvider time)
{
    /// <summary>How long an answer is kept: a copy comes within moments of its first, or of the first's answer.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromSeconds(10);

    /// <summary>The most answers kept: bounds a busy shared session's memory, at the price of forgetting sooner.</summary>
    public const int Capacity = 1024;

    /// <summary>The answer to a copy of a request that ended: accepted, without a silo (its delivery went out).</summary>
    private static readonly Admission EndedAnswer = new(null, null);

    private readonly Dictionary<string, Admission> _answers = new(StringComparer.Ordinal);
    private readonly Queue<(string Id, long At)> _order = new();

    public int Count => _answers.Count;

    /// <summary>Keeps the refusal a request got.</summary>
    public void Refused(string id, Admission refusal) => Add(id, refusal);

    /// <summary>Keeps that a request ended here (completed, cancelled or failed with a delivery).</summary>
    public void Ended(string id) => Add(id, EndedAnswer);

    public bool TryGet(string id, out Admission answer)
    {
        Prune();
        return _answers.TryGetValue(id, out answer!);
    }

    private void Add(string id, Admission answer)
    {
        Prune();
        if (_answers.TryAdd(id, answer))
        {
            _order.Enqueue((id, time.GetTimestamp()));
            if (_order.Count > Capacity)
            {
                _answers.Remove(_order.Dequeue().Id);
            }
        }
        else
        {
            _answers[id] = answer;
        }
    }

    private void Prune()
    {
        while (_order.TryPeek(out var oldest) && time.GetElapsedTime(oldest.At) > Window)
        {
            _answers.Remove(_order.Dequeue().Id);
        }
    }
}
