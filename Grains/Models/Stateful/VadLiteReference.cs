namespace StreamInfer.Grains.Models.Stateful;

/// <summary>
/// <see cref="VadLite"/>'s arithmetic in C#, in the graph's order of operations, for one sequence: its outputs equal
/// ONNX Runtime's bit for bit. The state is the sequence's slice of <c>state</c>, [2, 128] row-major (the level's lanes,
/// then the chunk counts), zeros at the start.
/// </summary>
public sealed class VadLiteReference
{
    private float[] _state = new float[VadLite.StateSize];
    private float[] _next = new float[VadLite.StateSize];

    /// <summary>The sequence's state after the chunks so far.</summary>
    public ReadOnlySpan<float> State => _state;

    /// <summary>Chunks run so far.</summary>
    public int Chunks { get; private set; }

    /// <summary>Runs one chunk: returns its <c>output</c> and carries <c>stateN</c> into the next chunk.</summary>
    public float Next(ReadOnlySpan<float> chunk, long sampleRate = VadLite.ReferenceSampleRate)
    {
        var output = Step(chunk, sampleRate, _state, _next);
        (_state, _next) = (_next, _state);
        Chunks++;
        return output;
    }

    /// <summary>The outputs of a whole sequence run alone from a zero state, chunk after chunk.</summary>
    public static float[] Run(IEnumerable<float[]> chunks, long sampleRate = VadLite.ReferenceSampleRate)
    {
        var sequence = new VadLiteReference();
        return [.. chunks.Select(c => sequence.Next(c, sampleRate))];
    }

    /// <summary>
    /// One row of the graph: <paramref name="state"/> and <paramref name="next"/> are one sequence's [2, 128]
    /// (<see cref="VadLite.StateSize"/> values each); returns <c>output</c>.
    /// </summary>
    public static float Step(ReadOnlySpan<float> chunk, long sampleRate, ReadOnlySpan<float> state, Span<float> next)
    {
        if (state.Length != VadLite.StateSize || next.Length != VadLite.StateSize)
        {
            throw new ArgumentException($"a sequence's state holds {VadLite.StateSize} values.", nameof(state));
        }

        var peak = float.NegativeInfinity;
        foreach (var x in chunk)
        {
            peak = MathF.Max(peak, x * x);
        }

        var energy = peak * ((float)sampleRate / VadLite.ReferenceSampleRate);
        for (var j = 0; j < VadLite.StateWidth; j++)
        {
            next[j] = (state[j] * VadLite.Decay(j)) + (energy * VadLite.Blend(j));
            next[VadLite.StateWidth + j] = state[VadLite.StateWidth + j] + 1f;
        }

        var z = (next[0] - VadLite.Threshold) * VadLite.Steepness;
        return (z / (MathF.Abs(z) + 1f) * 0.5f) + 0.5f;
    }

    /// <summary>
    /// A deterministic 32 ms chunk of audio-like samples for sequence <paramref name="sequence"/>, chunk
    /// <paramref name="index"/>: a tone whose loudness varies from chunk to chunk (bursts of "speech" and near-silence)
    /// plus a little noise, from integer hashing only, so every machine makes the same values.
    /// </summary>
    public static float[] Chunk(int sequence, int index, int samples = VadLite.ChunkSamples)
    {
        var chunk = new float[samples];
        var loud = Hash((uint)sequence, (uint)index) % 3 != 0;
        var amplitude = loud ? 0.1f + ((Hash((uint)sequence, (uint)index + 7919u) % 40) / 100f) : 0.01f;
        var period = 20 + ((int)(Hash((uint)sequence, 0xA5A5u) % 60));
        for (var i = 0; i < samples; i++)
        {
            var t = ((long)index * samples) + i;
            // A triangle wave (exact in float32) rather than a sine, whose last bit depends on the platform's library.
            var phase = (float)(t % period) / period;
            var wave = phase < 0.5f ? (4f * phase) - 1f : 3f - (4f * phase);
            var noise = ((Hash((uint)sequence, (uint)t) % 2001) - 1000f) / 100000f;
            chunk[i] = (amplitude * wave) + noise;
        }

        return chunk;
    }

    private static uint Hash(uint a, uint b)
    {
        var h = (a * 0x9E3779B1u) ^ (b + 0x7F4A7C15u + (a << 6) + (a >> 2));
        h ^= h >> 16;
        h *= 0x85EBCA6Bu;
        h ^= h >> 13;
        h *= 0xC2B2AE35u;
        return h ^ (h >> 16);
    }
}
