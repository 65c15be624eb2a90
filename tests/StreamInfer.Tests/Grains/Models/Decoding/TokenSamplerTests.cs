using StreamInfer.Grains.Models.Decoding;

namespace StreamInfer.Tests.Grains.Models.Decoding;

public sealed class TokenSamplerTests
{
    private static readonly float[] Four = [0.5f, 2.0f, 1.0f, -1.0f];

    [Fact]
    public void Next_TemperatureZero_PicksArgMax()
    {
        var sampler = new TokenSampler(0, null, null, seed: 1);

        Assert.True(sampler.IsGreedy);
        Assert.Equal(1, sampler.Next(Four));
        Assert.Equal(3, sampler.Next([0f, -5f, float.NaN, 7f, 2f]));
    }

    [Fact]
    public void Next_GreedyTie_PicksLowestId()
    {
        var sampler = new TokenSampler(0, null, null, seed: 1);

        Assert.Equal(1, sampler.Next([0f, 3f, 1f, 3f]));
    }

    [Fact]
    public void Next_NullTemperature_TakesConfiguredDefault()
    {
        Assert.True(new TokenSampler(null, null, null, seed: 1, defaultTemperature: 0).IsGreedy);
        Assert.Equal(1.0, new TokenSampler(null, null, null, seed: 1).Temperature);
    }

    [Fact]
    public void Next_SameSeed_GivesSameSequence()
    {
        var logits = Spread(50);

        var first = Draw(new TokenSampler(1.0, null, null, seed: 42), logits, 100);
        var second = Draw(new TokenSampler(1.0, null, null, seed: 42), logits, 100);
        var other = Draw(new TokenSampler(1.0, null, null, seed: 43), logits, 100);

        Assert.Equal(first, second);
        Assert.NotEqual(first, other);
    }

    [Fact]
    public void Next_NoSeed_ReportsTheSeedItChose()
    {
        var logits = Spread(50);
        var unseeded = new TokenSampler(1.0, 40, 0.95, seed: null);

        var drawn = Draw(unseeded, logits, 100);

        Assert.Equal(drawn, Draw(new TokenSampler(1.0, 40, 0.95, unseeded.Seed), logits, 100));
    }

    [Fact]
    public void Next_TopKOne_EqualsGreedy()
    {
        var sampler = new TokenSampler(1.5, 1, null, seed: 7);

        Assert.All(Draw(sampler, Four, 50), id => Assert.Equal(1, id));
    }

    [Fact]
    public void Next_TinyTopP_EqualsGreedy()
    {
        var sampler = new TokenSampler(1.5, null, 1e-6, seed: 7);

        Assert.All(Draw(sampler, Four, 200), id => Assert.Equal(1, id));
    }

    [Fact]
    public void Next_TopKThree_OnlyEverPicksTheThreeBest()
    {
        float[] logits = [1f, 5f, 0f, 4f, 3.5f, 2f, 3.4f, -1f];
        var sampler = new TokenSampler(2.0, 3, null, seed: 3);

        var seen = Draw(sampler, logits, 1000).ToHashSet();

        Assert.Equal(new HashSet<int> { 1, 3, 4 }, seen);
    }

    [Fact]
    public void Next_TopKOverLargeVocabulary_PicksOnlyFromTheKBest()
    {
        var logits = Spread(50_000);
        var best = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(40).ToHashSet();
        var sampler = new TokenSampler(1.0, 40, null, seed: 11);

        Assert.All(Draw(sampler, logits, 300), id => Assert.Contains(id, best));
    }

    [Fact]
    public void Next_TopPOverLargeVocabulary_PicksOnlyFromTheNucleus()
    {
        // Peakier than Spread alone, as a model's logits are: the nucleus is hundreds of tokens, not thousands.
        var logits = Spread(50_000).Select(l => 3 * l).ToArray();
        var nucleus = NaiveNucleus(logits, 0.5);
        var sampler = new TokenSampler(1.0, null, 0.5, seed: 5);

        var drawn = Draw(sampler, logits, 100);

        Assert.All(drawn, id => Assert.Contains(id, nucleus));
        Assert.True(drawn.Distinct().Count() > 1);
    }

    [Fact]
    public void Next_LowTemperature_ConcentratesOnTheMax()
    {
        var sampler = new TokenSampler(0.05, null, null, seed: 9);

        var hits = Draw(sampler, Four, 1000).Count(id => id == 1);

        Assert.True(hits >= 999, $"the max was drawn {hits} times of 1000");
    }

    [Fact]
    public void Next_FourTokens_FrequenciesFollowSoftmax()
    {
        const int draws = 20_000;
        var sampler = new TokenSampler(1.0, null, null, seed: 2024);
        var counts = new int[Four.Length];
        foreach (var id in Draw(sampler, Four, draws))
        {
            counts[id]++;
        }

        var exps = Four.Select(l => Math.Exp(l)).ToArray();
        var chiSquare = 0.0;
        for (var i = 0; i < Four.Length; i++)
        {
            var expected = draws * exps[i] / exps.Sum();
            chiSquare += (counts[i] - expected) * (counts[i] - expected) / expected;
        }

        // 16.27 is the 0.1% critical value with 3 degrees of freedom; the fixed seed makes the outcome fixed.
        Assert.True(chiSquare < 16.27, $"chi-square {chiSquare:F2} for counts {string.Join(", ", counts)}");
    }

    [Fact]
    public void Next_AllLogitsNegativeInfinity_PicksLowestId()
    {
        var sampler = new TokenSampler(1.0, null, null, seed: 1);

        Assert.Equal(0, sampler.Next([float.NegativeInfinity, float.NegativeInfinity]));
    }

    [Theory]
    [InlineData(-0.1, null, null)]
    [InlineData(null, -1, null)]
    [InlineData(null, null, 0.0)]
    [InlineData(null, null, 1.5)]
    public void Constructor_OutOfRange_Throws(double? temperature, int? topK, double? topP)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(temperature, topK, topP, seed: 1));
    }

    private static int[] Draw(TokenSampler sampler, float[] logits, int count)
    {
        var ids = new int[count];
        for (var i = 0; i < count; i++)
        {
            ids[i] = sampler.Next(logits);
        }
        return ids;
    }

    /// <summary>Deterministic, varied logits with some ties, spread like a model's (a few high, most low).</summary>
    private static float[] Spread(int size)
    {
        var logits = new float[size];
        var state = 12345u;
        for (var i = 0; i < size; i++)
        {
            state = (state * 1664525u) + 1013904223u;
            logits[i] = (state >> 8) % 1000 / 100f;
        }
        return logits;
    }

    private static HashSet<int> NaiveNucleus(float[] logits, double p)
    {
        var max = logits.Max();
        var weights = logits.Select(l => Math.Exp(l - max)).ToArray();
        var total = weights.Sum();
        var nucleus = new HashSet<int>();
        var kept = 0.0;
        foreach (var id in Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i))
        {
            nucleus.Add(id);
            kept += weights[id];
            if (kept >= p * total)
            {
                break;
            }
        }
        return nucleus;
    }
}
