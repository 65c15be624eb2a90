namespace StreamInfer.Frontend.Requests;

/// <summary>
/// The order of one connection's (or one stream's) admissions within each stateful sequence: a sequence's request is
/// submitted to the session only once the admission of the one sent before it has answered, so that the session sees
/// a sequence's requests in the order the client sent them (Orleans does not order concurrent calls). Requests of other
/// sequences, and those of none, are admitted concurrently as before. Turns are taken by the one loop that reads the
/// client, in the order it reads.
/// </summary>
internal sealed class SequenceTurns
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, Task> _tails = new(StringComparer.Ordinal);

    /// <summary>The next turn of sequence <paramref name="sequenceId"/>; null for a request of no sequence.</summary>
    public Turn? Take(string? sequenceId)
    {
        if (sequenceId is null)
        {
            return null;
        }

        var turn = new Turn(this, sequenceId);
        lock (_gate)
        {
            turn.Previous = _tails.GetValueOrDefault(sequenceId) ?? Task.CompletedTask;
            _tails[sequenceId] = turn.Mine;
        }

        return turn;
    }

    private void Finished(Turn turn)
    {
        lock (_gate)
        {
            // The last turn taken leaves no tail behind: the map holds only sequences with an admission under way.
            _tails.Remove(turn.SequenceId, out var tail);
            if (tail is not null && tail != turn.Mine)
            {
                _tails[turn.SequenceId] = tail;
            }
        }
    }

    /// <summary>One request's place in its sequence's order.</summary>
    internal sealed class Turn(SequenceTurns owner, string sequenceId)
    {
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _finished;

        public string SequenceId { get; } = sequenceId;

        /// <summary>Completes (never faults) once the admission of the sequence's previous request has answered.</summary>
        public Task Previous { get; set; } = Task.CompletedTask;

        internal Task Mine => _done.Task;

        /// <summary>This request's admission answered (or it will not be submitted): the next one may go. Idempotent.</summary>
        public void Done()
        {
            if (Interlocked.Exchange(ref _finished, 1) == 0)
            {
                owner.Finished(this);
                _done.TrySetResult();
            }
        }
    }
}
