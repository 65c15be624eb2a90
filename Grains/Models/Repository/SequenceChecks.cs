using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models.Repository;

/// <summary>The <c>sequence</c> section's own checks (names against the model are checked when it loads) and its limits.</summary>
internal static class SequenceChecks
{
    public static SequenceOptions Read(SequenceConfig sequence, Action<string?, string> error)
    {
        var options = new SequenceOptions();
        FieldChecks.Milliseconds(sequence.IdleTimeoutMs, 1, 86_400_000, "sequence.idle_timeout_ms", error, v => options.IdleTimeout = v);
        FieldChecks.Range(sequence.MaxSequences, 1, 1_000_000, "sequence.max_sequences", error, v => options.MaxSequences = v);
        options.Window = sequence.Window is { } window ? WindowChecks.Read(window, error) : null;
        if (sequence.State is not { Count: > 0 } pairs)
        {
            error("sequence.state", "is missing: a stateful model names at least one {\"input\", \"output\"} state pair.");
            return options;
        }

        for (var i = 0; i < pairs.Count; i++)
        {
            if (string.IsNullOrEmpty(pairs[i].Input))
            {
                error($"sequence.state[{i}].input", "is missing.");
            }

            if (string.IsNullOrEmpty(pairs[i].Output))
            {
                error($"sequence.state[{i}].output", "is missing.");
            }

            if (pairs[i].Initial is { } initial && !double.IsFinite(initial))
            {
                error($"sequence.state[{i}].initial", $"must be a finite number; got {initial}.");
            }
        }

        return options;
    }
}
