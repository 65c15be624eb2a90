namespace StreamInfer.Grains.Models.Decoding;

/// <summary>
/// Picks each next token of one sequence from the model's logits: greedy (argmax, ties to the lowest id) at temperature
/// 0, else temperature, then top-k, then top-p (nucleus), then a draw from the rest. Draws come from a generator of
/// its own seeded by <see cref="Seed"/>, so the same seed and logits give the same tokens. Not thread-safe: one
/// instance per sequence; its scratch buffer is reused across steps.
/// </summary>
public sealed class TokenSampler
{
    // Top-p sorts candidates in growing chunks: the nucleus is usually a few dozen tokens of a 50k vocabulary.
    private const int FirstNucleusChunk = 64;

    // Up to this k, top-k keeps a heap in one pass over the logits; past it, quickselect over a copy is cheaper.
    private const int HeapTopKLimit = 1024;

    private Xoshiro256 _random;
    private Candidate[] _scratch = [];

    /// <param name="temperature">In [0, 2]; 0 is greedy; null takes <paramref name="defaultTemperature"/>.</param>
    /// <param name="topK">Keep only the k most likely tokens; 0 or null for all.</param>
    /// <param name="topP">Keep the smallest most-likely set whose probability reaches p, in (0, 1]; 1 or null for all.</param>
    /// <param name="seed">Seeds the draws; null for a random seed (see <see cref="Seed"/>).</param>
    /// <param name="defaultTemperature">The configured temperature for requests that give none.</param>
    public TokenSampler(double? temperature, int? topK, double? topP, long? seed, double defaultTemperature = 1.0)
    {
        Temperature = temperature ?? defaultTemperature;
        if (!(Temperature >= 0) || double.IsInfinity(Temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(temperature), Temperature, "Temperature must be a finite number ≥ 0.");
        }
        TopK = topK ?? 0;
        ArgumentOutOfRangeException.ThrowIfNegative(TopK, nameof(topK));
        TopP = topP ?? 1.0;
        if (!(TopP > 0 && TopP <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(topP), TopP, "top_p must be in (0, 1].");
        }
        Seed = seed ?? Random.Shared.NextInt64();
        _random = new Xoshiro256(Seed);
    }

    public double Temperature { get; }

    /// <summary>The k of top-k; 0 when off.</summary>
    public int TopK { get; }

    /// <summary>The p of top-p; 1 when off.</summary>
    public double TopP { get; }

    /// <summary>The seed of the draws: the request's, or the random one chosen for it (to report, so a run can be repeated).</summary>
    public long Seed { get; }

    /// <summary>Whether every step is an argmax (temperature 0 or top_k 1), which draws nothing.</summary>
    public bool IsGreedy => Temperature == 0 || TopK == 1;

    /// <summary>The next token id, from one row of logits (one per vocabulary entry). NaN logits count as -∞.</summary>
    public int Next(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("There are no logits to sample from.", nameof(logits));
        }
        if (IsGreedy)
        {
            return ArgMax(logits);
        }

        if (_scratch.Length < logits.Length)
        {
            _scratch = new Candidate[logits.Length];
        }
        Span<Candidate> candidates;
        if (TopK > 0 && TopK <= HeapTopKLimit && TopK < logits.Length)
        {
            candidates = KeepBest(logits, _scratch.AsSpan(0, TopK));
        }
        else
        {
            candidates = _scratch.AsSpan(0, logits.Length);
            for (var i = 0; i < logits.Length; i++)
            {
                candidates[i] = new Candidate(Sanitize(logits[i]), i);
            }
            if (TopK > 0 && TopK < candidates.Length)
            {
                SelectBest(candidates, TopK);
                candidates = candidates[..TopK];
            }
        }

        var max = float.NegativeInfinity;
        foreach (ref readonly var candidate in candidates)
        {
            max = MathF.Max(max, candidate.Logit);
        }
        if (float.IsNegativeInfinity(max))
        {
            return ArgMax(logits);
        }
        var total = 0.0;
        foreach (ref var candidate in candidates)
        {
            // Shifting by the max keeps exp in range; the weights are softmax numerators.
            candidate.Weight = Math.Exp((candidate.Logit - max) / Temperature);
            total += candidate.Weight;
        }

        if (TopP < 1)
        {
            candidates = Nucleus(candidates, TopP * total, out total);
        }

        var draw = _random.NextDouble() * total;
        foreach (ref readonly var candidate in candidates)
        {
            draw -= candidate.Weight;
            if (draw < 0)
            {
                return candidate.Id;
            }
        }
        // Rounding can leave a sliver past the last weight; it belongs to the last candidate.
        return candidates[^1].Id;
    }

    private static float Sanitize(float logit) => float.IsNaN(logit) ? float.NegativeInfinity : logit;

    /// <summary>The best <c>heap.Length</c> logits, in no particular order, by one pass with a min-heap: most logits
    /// lose one comparison with the heap's worst and cost nothing more.</summary>
    private static Span<Candidate> KeepBest(ReadOnlySpan<float> logits, Span<Candidate> heap)
    {
        for (var i = 0; i < heap.Length; i++)
        {
            heap[i] = new Candidate(Sanitize(logits[i]), i);
            SiftUp(heap, i);
        }
        for (var i = heap.Length; i < logits.Length; i++)
        {
            // Ids rise, so a later equal logit never displaces an earlier one: ties keep the lowest ids.
            var logit = Sanitize(logits[i]);
            if (logit > heap[0].Logit)
            {
                heap[0] = new Candidate(logit, i);
                SiftDown(heap);
            }
        }
        return heap;
    }

    private static void SiftUp(Span<Candidate> heap, int index)
    {
        while (index > 0)
        {
            var parent = (index - 1) >> 1;
            if (!Better(heap[parent], heap[index]))
            {
                return;
            }
            (heap[parent], heap[index]) = (heap[index], heap[parent]);
            index = parent;
        }
    }

    private static void SiftDown(Span<Candidate> heap)
    {
        var index = 0;
        while (true)
        {
            var worst = index;
            var left = (2 * index) + 1;
            if (left < heap.Length && Better(heap[worst], heap[left]))
            {
                worst = left;
            }
            if (left + 1 < heap.Length && Better(heap[worst], heap[left + 1]))
            {
                worst = left + 1;
            }
            if (worst == index)
            {
                return;
            }
            (heap[worst], heap[index]) = (heap[index], heap[worst]);
            index = worst;
        }
    }

    private static int ArgMax(ReadOnlySpan<float> logits)
    {
        var best = 0;
        var bestLogit = float.NegativeInfinity;
        for (var i = 0; i < logits.Length; i++)
        {
            if (logits[i] > bestLogit)
            {
                bestLogit = logits[i];
                best = i;
            }
        }
        return best;
    }

    /// <summary>The most likely candidates, in order, whose weights first reach <paramref name="threshold"/>; sorts
    /// only as far as it has to.</summary>
    private static Span<Candidate> Nucleus(Span<Candidate> candidates, double threshold, out double kept)
    {
        kept = 0;
        var sorted = 0;
        var chunk = FirstNucleusChunk;
        var count = 0;
        while (true)
        {
            if (count == sorted)
            {
                if (sorted == candidates.Length)
                {
                    return candidates;
                }
                var take = Math.Min(chunk, candidates.Length - sorted);
                var rest = candidates[sorted..];
                if (take < rest.Length)
                {
                    SelectBest(rest, take);
                }
                rest[..take].Sort(default(BestFirst));
                sorted += take;
                chunk *= 4;
            }
            kept += candidates[count].Weight;
            count++;
            if (kept >= threshold)
            {
                return candidates[..count];
            }
        }
    }

    /// <summary>Moves the <paramref name="k"/> best candidates to the front, in no particular order (quickselect).</summary>
    private static void SelectBest(Span<Candidate> items, int k)
    {
        var lo = 0;
        var hi = items.Length - 1;
        var target = k - 1;
        while (lo < hi)
        {
            var mid = lo + ((hi - lo) >> 1);
            // Median of three as the pivot, parked at hi: sorted or constant logits stay linear on average.
            if (Better(items[hi], items[lo]))
            {
                (items[lo], items[hi]) = (items[hi], items[lo]);
            }
            if (Better(items[mid], items[lo]))
            {
                (items[lo], items[mid]) = (items[mid], items[lo]);
            }
            if (Better(items[mid], items[hi]))
            {
                (items[mid], items[hi]) = (items[hi], items[mid]);
            }
            var pivot = items[hi];
            var store = lo;
            for (var i = lo; i < hi; i++)
            {
                if (Better(items[i], pivot))
                {
                    (items[i], items[store]) = (items[store], items[i]);
                    store++;
                }
            }
            (items[store], items[hi]) = (items[hi], items[store]);
            if (store == target)
            {
                return;
            }
            if (store < target)
            {
                lo = store + 1;
            }
            else
            {
                hi = store - 1;
            }
        }
    }

    // A strict total order: higher logit first, equal logits by lower id, so every selection is deterministic.
    private static bool Better(in Candidate a, in Candidate b) => a.Logit > b.Logit || (a.Logit == b.Logit && a.Id < b.Id);

    private struct Candidate(float logit, int id)
    {
        public readonly float Logit = logit;
        public readonly int Id = id;
        public double Weight;
    }

    private readonly struct BestFirst : IComparer<Candidate>
    {
        public int Compare(Candidate x, Candidate y) => Better(x, y) ? -1 : Better(y, x) ? 1 : 0;
    }
}
