namespace StreamInfer.Grains.Sessions;

/// <summary>
/// One stateful sequence of a client as its session knows it: the batcher its start went to, where its state lives and
/// every later request of it goes (never another, whatever the load), the one request of it that batcher has now, and
/// the ordered requests waiting for that one to end. Not thread-safe: owned by one session grain.
/// </summary>
internal sealed class SessionSequence(string id, string model, BatcherKey batcher, DateTimeOffset now)
{
    /// <summary>The client's name for the sequence.</summary>
    public string Id { get; } = id;

    /// <summary>The model its start named; its other requests must name it too.</summary>
    public string Model { get; } = model;

    /// <summary>The batcher that holds its state.</summary>
    public BatcherKey Batcher { get; } = batcher;

    /// <summary>Whether its batcher took one of its requests: until then its start may meet a sequence of the same id
    /// that the batcher still holds and this session never knew of.</summary>
    public bool Confirmed { get; set; }

    /// <summary>When a request of it last ended or was forwarded: its batcher's idle clock started no earlier.</summary>
    public DateTimeOffset LastActive { get; set; } = now;

    /// <summary>Whether nothing of it is at its batcher or waits for it here.</summary>
    public bool Idle => Running is null && Waiting.Count == 0;

    /// <summary>The id of its request forwarded to <see cref="Batcher"/> and not yet ended; null when none is.</summary>
    public string? Running { get; set; }

    /// <summary>
    /// Ordered requests that arrived while <see cref="Running"/> was set, in arrival order. Ids whose request has since
    /// ended (cancelled, expired) stay until they reach the head and are skipped there.
    /// </summary>
    public Queue<string> Waiting { get; } = new();
}

/// <summary>A request a session admitted and has not yet seen end.</summary>
/// <param name="batcher">The batcher it went to, or will go to.</param>
/// <param name="deadline">When it must have run by.</param>
/// <param name="item">What the batcher gets.</param>
/// <param name="sequence">The sequence it belongs to, or null.</param>
internal sealed class Pending(BatcherKey batcher, DateTimeOffset deadline, BatchItem item, SessionSequence? sequence)
{
    public BatcherKey Batcher { get; set; } = batcher;

    public DateTimeOffset Deadline { get; } = deadline;

    public BatchItem Item { get; } = item;

    public string Id => Item.Request.RequestId;

    /// <summary>The sequence it belongs to; moves to a new one when it waited behind a sequence that ended.</summary>
    public SessionSequence? Sequence { get; set; } = sequence;

    /// <summary>Whether it waits in the session for its sequence's previous request to end (not yet at a batcher).</summary>
    public bool Held { get; set; }
}
