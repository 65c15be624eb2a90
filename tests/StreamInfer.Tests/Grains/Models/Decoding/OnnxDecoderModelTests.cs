using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models.Decoding;

/// <summary>
/// The decoder engine called directly on the built-in tiny-lm: continuous batching (sequences joining a running batch,
/// chunked prefill) must not change any sequence's greedy tokens.
/// </summary>
public sealed class OnnxDecoderModelTests(OnnxModelsFixture models) : IClassFixture<OnnxModelsFixture>
{
    private OnnxDecoderModel TinyLm() => models.Decoder(StreamInfer.Grains.Models.Decoding.TinyLm.Name);

    [Fact]
    public void Step_SequenceJoinsARunningBatchMidway_SameGreedyTokensAsAlone()
    {
        var model = TinyLm();
        var (alone, aloneCache) = DecodeAlone(model, "Joining late", 12);

        var early = new[] { Sequence(model, "A much longer prompt that runs first", 40), Sequence(model, "short", 40) };
        var joined = new List<int>();
        var running = new List<DecodeSequence>();
        Step(model, [.. early.Select(s => (s, s.Prompt.Length))], [], null);
        running.AddRange(early);
        for (var i = 0; i < 5; i++)
        {
            Step(model, [], running, null);
        }

        var late = Sequence(model, "Joining late", 12);
        // The late prompt's prefill shares a step with the running sequences' decoding, then it decodes beside them.
        Step(model, [(late, late.Prompt.Length)], running, (late, joined));
        running.Add(late);
        while (!late.Finished)
        {
            Step(model, [], running.Where(s => !s.Finished).ToList(), (late, joined));
        }

        Assert.Equal(alone, joined);
        AssertSameCache(aloneCache, late);
    }

    [Fact]
    public void Step_PromptPrefilledInChunks_SameGreedyTokensAsOneShot()
    {
        var model = TinyLm();
        var prompt = "A prompt that is prefilled three tokens at a time, beside others";
        var (alone, aloneCache) = DecodeAlone(model, prompt, 10);

        var chunked = Sequence(model, prompt, 10);
        var other = Sequence(model, "other", 100);
        Step(model, [(other, other.Prompt.Length)], [], null);
        var tokens = new List<int>();
        while (!chunked.Decoding)
        {
            Step(model, [(chunked, Math.Min(3, chunked.Prompt.Length - chunked.Prefilled))], [other], (chunked, tokens));
        }

        while (!chunked.Finished)
        {
            Step(model, [], [chunked, other], (chunked, tokens));
        }

        Assert.Equal(alone, tokens);
        AssertSameCache(aloneCache, chunked);
    }

    [Fact]
    public void Step_MaxTokensReached_FinishesWithLengthAndCountsEveryToken()
    {
        var model = TinyLm();
        var seq = Sequence(model, "count", 5);
        var outcomes = new List<StepOutcome>();
        outcomes.AddRange(model.Step([(seq, seq.Prompt.Length)], []));
        while (!seq.Finished)
        {
            outcomes.AddRange(model.Step([], [seq]));
        }

        Assert.Equal(5, outcomes.Count);
        Assert.Equal([0, 1, 2, 3, 4], outcomes.Select(o => o.Token!.Index));
        Assert.Equal(FinishReasons.Length, outcomes[^1].FinishReason);
        Assert.All(outcomes[..^1], o => Assert.Null(o.FinishReason));
        Assert.Equal(5 + 4, seq.CacheLength);
    }

    /// <summary>
    /// The engine's incremental cache (prefill, then one token per step, left-padded beside another sequence) holds
    /// exactly the keys and values that one run of the whole sequence without any cache computes.
    /// </summary>
    [Fact]
    public void Step_CacheAfterDecoding_EqualsRecomputingTheWholeSequenceWithoutCache()
    {
        var model = TinyLm();
        var seq = Sequence(model, "Recompute me", 15);
        var other = Sequence(model, "A neighbour with a longer prompt", 40);
        var tokens = new List<int>();
        Step(model, [(seq, seq.Prompt.Length), (other, other.Prompt.Length)], [], (seq, tokens));
        while (!seq.Finished)
        {
            Step(model, [], [seq, other], (seq, tokens));
        }

        // The cache holds the prompt and every generated token but the last (never fed back).
        long[] ids = [.. seq.Prompt, .. tokens.Take(tokens.Count - 1)];
        Assert.Equal(ids.Length, seq.CacheLength);
        var file = Path.Combine(models.Repository, StreamInfer.Grains.Models.Decoding.TinyLm.Name, "1", "model.onnx");
        using var session = new InferenceSession(file);
        var shape = seq.Shape;
        var n = ids.Length;
        using var inputs = new DisposableList
        {
            ["input_ids"] = OrtValue.CreateTensorValueFromMemory(ids, [1, n]),
            ["attention_mask"] = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, n).ToArray(), [1, n]),
            ["position_ids"] = OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, n).Select(i => (long)i).ToArray(), [1, n]),
        };
        for (var l = 0; l < shape.Layers; l++)
        {
            inputs[$"past_key_values.{l}.key"] = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [1, shape.Heads, 0, shape.HeadDim]);
            inputs[$"past_key_values.{l}.value"] = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [1, shape.Heads, 0, shape.HeadDim]);
        }

        var outputNames = Enumerable.Range(0, shape.Layers).SelectMany(l => new[] { $"present.{l}.key", $"present.{l}.value" }).ToArray();
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, [.. inputs.Keys], [.. inputs.Values], outputNames);
        for (var l = 0; l < shape.Layers; l++)
        {
            for (var k = 0; k < 2; k++)
            {
                var present = outputs[(2 * l) + k].GetTensorDataAsSpan<float>();
                for (var h = 0; h < shape.Heads; h++)
                {
                    var expected = present.Slice(h * n * shape.HeadDim, n * shape.HeadDim);
                    var cached = seq.Cached(l, k == 0, h);
                    for (var i = 0; i < expected.Length; i++)
                    {
                        Assert.True(Math.Abs(expected[i] - cached[i]) <= 1e-4f, $"layer {l} {(k == 0 ? "key" : "value")} head {h} element {i}: recomputed {expected[i]}, cached {cached[i]}");
                    }
                }
            }
        }
    }

    [Fact]
    public void Release_LeavingSequence_ItsCacheServesTheNextWithTheSameTokens()
    {
        var model = TinyLm();
        var pool = model.CachePool;
        var liveBefore = pool.LiveBytes;
        var (first, firstSequence) = DecodeAlone(model, "Reuse my cache", 20);
        Assert.Equal(liveBefore + model.ReservedBytes(firstSequence), pool.LiveBytes);

        firstSequence.Release();
        Assert.Equal(liveBefore, pool.LiveBytes);
        var kept = pool.FreeBytes;
        Assert.True(kept >= model.ReservedBytes(firstSequence), $"kept {kept} bytes, the sequence held {model.ReservedBytes(firstSequence)}");

        var (second, secondSequence) = DecodeAlone(model, "Reuse my cache", 20);

        // The second took the first's arrays rather than new ones, and what they still held did not leak into it.
        Assert.Equal(kept - model.ReservedBytes(secondSequence), pool.FreeBytes);
        Assert.Equal(first, second);
        secondSequence.Release();
    }

    private static DecodeSequence Sequence(OnnxDecoderModel model, string prompt, int maxTokens)
    {
        var (seq, error) = model.Prepare(new InferRequest("t", model.Name, [], prompt, null, "test", null, new GenerationOptions(MaxTokens: maxTokens, Temperature: 0)));
        Assert.Null(error);
        return seq!;
    }

    private static (List<int> Tokens, DecodeSequence Sequence) DecodeAlone(OnnxDecoderModel model, string prompt, int maxTokens)
    {
        var seq = Sequence(model, prompt, maxTokens);
        var tokens = new List<int>();
        Step(model, [(seq, seq.Prompt.Length)], [], (seq, tokens));
        while (!seq.Finished)
        {
            Step(model, [], [seq], (seq, tokens));
        }

        return (tokens, seq);
    }

    /// <summary>
    /// Every key and value a sequence cached equals (within float tolerance) those of the same sequence decoded alone:
    /// a stronger check than its greedy tokens, which tiny-lm's fixed logits bias makes insensitive to small errors
    /// (a wrong position id or a leaked padding position changes the cache, not always the argmax).
    /// </summary>
    private static void AssertSameCache(DecodeSequence expected, DecodeSequence actual)
    {
        Assert.Equal(expected.CacheLength, actual.CacheLength);
        var shape = expected.Shape;
        for (var layer = 0; layer < shape.Layers; layer++)
        {
            foreach (var key in new[] { true, false })
            {
                for (var head = 0; head < shape.Heads; head++)
                {
                    var a = expected.Cached(layer, key, head);
                    var b = actual.Cached(layer, key, head);
                    for (var i = 0; i < a.Length; i++)
                    {
                        Assert.True(Math.Abs(a[i] - b[i]) <= 1e-4f, $"layer {layer} {(key ? "key" : "value")} head {head} element {i}: {a[i]} alone, {b[i]} batched");
                    }
                }
            }
        }
    }

    private static void Step(OnnxDecoderModel model, List<(DecodeSequence, int)> prefill, List<DecodeSequence> decode, (DecodeSequence Watched, List<int> Tokens)? watch)
    {
        foreach (var outcome in model.Step(prefill, decode))
        {
            if (watch is { } w && outcome.Sequence == w.Watched && outcome.Token is { } token)
            {
                w.Tokens.Add(token.TokenId);
            }
        }
    }

    /// <summary>Named ONNX Runtime values, disposed together.</summary>
    private sealed class DisposableList : Dictionary<string, OrtValue>, IDisposable
    {
        public void Dispose()
        {
            foreach (var value in Values)
            {
                value.Dispose();
            }
        }
    }
}
