namespace StreamInfer.Grains.Models;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood): a generator whose sequence is fixed by its definition, unlike System.Random's
/// seeded sequence (an implementation detail). Used wherever the same seed must give the same numbers on every machine
/// and .NET version: generated model weights, and the seeding of the sampler's generator.
/// </summary>
public sealed class SplitMix64(ulong seed)
{
    private ulong _state = seed;

    /// <summary>The next 64 random bits.</summary>
    public ulong Next() => Next(ref _state);

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Advances <paramref name="state"/> and returns the next 64 random bits.</summary>
    public static ulong Next(ref ulong state)
    {
        var z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
