using System.Text;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.Tests.Grains.Models.Decoding;

/// <summary>The generated tiny-lm, run on bare ONNX Runtime: its HF-style signature, determinism, KV cache and padding.</summary>
public sealed class TinyLmTests(TinyLmTests.ModelFixture model) : IClassFixture<TinyLmTests.ModelFixture>
{
    private const float Tolerance = 1e-4f;
    private const int Layers = 4;
    private const int Heads = 4;
    private const int HeadDim = 32;

    [Fact]
    public void Write_Default_HasHuggingFaceInputsAndOutputs()
    {
        var inputs = model.Session.InputMetadata;
        var outputs = model.Session.OutputMetadata;
        string[] expectedInputs = ["input_ids", "attention_mask", "position_ids", .. CacheNames("past_key_values", ".key", ".value")];
        string[] expectedOutputs = ["logits", .. CacheNames("present", ".key", ".value")];
        Assert.Equal(expectedInputs, model.Session.InputNames);
        Assert.Equal(expectedOutputs, model.Session.OutputNames);

        foreach (var name in new[] { "input_ids", "position_ids" })
        {
            AssertTensor(inputs[name], typeof(long), [TinyLm.BatchDim, TinyLm.SequenceDim], [-1, -1]);
        }

        AssertTensor(inputs["attention_mask"], typeof(long), [TinyLm.BatchDim, TinyLm.TotalDim], [-1, -1]);
        foreach (var name in CacheNames("past_key_values", ".key", ".value"))
        {
            AssertTensor(inputs[name], typeof(float), [TinyLm.BatchDim, "", TinyLm.PastDim, ""], [-1, Heads, -1, HeadDim]);
        }

        AssertTensor(outputs["logits"], typeof(float), [TinyLm.BatchDim, TinyLm.SequenceDim, ""], [-1, -1, TinyLm.VocabSize]);
        foreach (var name in CacheNames("present", ".key", ".value"))
        {
            AssertTensor(outputs[name], typeof(float), [TinyLm.BatchDim, "", TinyLm.TotalDim, ""], [-1, Heads, -1, HeadDim]);
        }
    }

    [Fact]
    public void Write_Twice_GivesIdenticalBytes()
    {
        using var other = new TempFolder();
        TinyLm.Write(other.Path);

        Assert.Equal(File.ReadAllBytes(model.OnnxPath), File.ReadAllBytes(Path.Combine(other.Path, "1", "model.onnx")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(model.Folder.Path, "config.json")), File.ReadAllBytes(Path.Combine(other.Path, "config.json")));
    }

    [Fact]
    public void Run_FreshlyWrittenModel_GreedyDecodingEqualsTheFirstCopy()
    {
        // Weights come from integer PRNG arithmetic and IEEE additions only: a copy written and opened afresh decodes
        // to the same tokens and the same logits.
        using var other = new TempFolder();
        TinyLm.Write(other.Path);
        using var options = new SessionOptions { IntraOpNumThreads = 1 };
        using var session = new InferenceSession(Path.Combine(other.Path, "1", "model.onnx"), options);
        var prompt = Tokens("Once upon a time");

        var first = GreedyAlone(model.Session, prompt, 12);
        var again = GreedyAlone(session, prompt, 12);

        Assert.Equal(first.Tokens, again.Tokens);
        for (var step = 0; step < first.Logits.Count; step++)
        {
            Assert.Equal(first.Logits[step], again.Logits[step]);
        }
    }

    [Fact]
    public void Run_Greedy_GeneratesPrintableTextOrEndOfText()
    {
        // The logits bias favours printable ASCII, letters and space far above what the random weights add.
        var (tokens, _) = GreedyAlone(model.Session, Tokens("Hello"), 40);

        Assert.All(tokens, t => Assert.True(t is >= 32 and <= 126 or '\n' or TinyLm.EndOfTextTokenId, $"token {t} is not printable"));
    }

    [Fact]
    public void Write_TwoLayers_HasTwoLayersOfCache()
    {
        using var other = new TempFolder();
        TinyLm.Write(other.Path, new TinyLmOptions { Layers = 2 });
        using var session = new InferenceSession(Path.Combine(other.Path, "1", "model.onnx"));

        Assert.Equal(["past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value"], session.InputNames.Where(n => n.StartsWith("past_", StringComparison.Ordinal)));
        Assert.Equal(["present.0.key", "present.0.value", "present.1.key", "present.1.value"], session.OutputNames.Where(n => n.StartsWith("present", StringComparison.Ordinal)));
    }

    [Fact]
    public void ConfigJson_Default_ReadsAsDecoderModelConfig()
    {
        var config = JsonSerializer.Deserialize<ModelConfig>(File.ReadAllBytes(Path.Combine(model.Folder.Path, "config.json")), ModelConfig.Json);

        Assert.NotNull(config);
        Assert.Equal("decoder", config.Kind);
        Assert.Equal("bytes", config.Tokenizer);
        Assert.Equal(1024, config.MaxContextTokens);
        Assert.Equal(TinyLm.EndOfTextTokenId, config.EosTokenId);
        Assert.Equal(64, config.MaxBatchSize);
    }

    [Fact]
    public void Run_GreedyWithCache_EqualsRecomputingWithoutCache()
    {
        var prompt = Tokens("Once upon a time");
        var (cachedTokens, cachedLogits) = GreedyAlone(prompt, 20);

        var sequence = prompt.ToList();
        for (var step = 0; step < 20; step++)
        {
            var full = Run([[.. sequence]], [Ones(sequence.Count)], [Positions(0, sequence.Count)], past: null);
            var last = Row(full.Logits, 0, sequence.Count - 1);
            AssertClose(last, cachedLogits[step]);
            var next = ArgMax(last);
            Assert.Equal(cachedTokens[step], next);
            sequence.Add(next);
        }
    }

    [Fact]
    public void Run_LeftPaddedBatch_EachRowEqualsItsDecodingAlone()
    {
        long[][] prompts = [Tokens("Once upon a time"), Tokens("Hi")];
        const int steps = 10;
        var alone = prompts.Select(p => GreedyAlone(p, steps)).ToArray();

        var width = prompts.Max(p => p.Length);
        var ids = prompts.Select(p => LeftPad(p, width, 0L)).ToArray();
        var mask = prompts.Select(p => LeftPad(Ones(p.Length), width, 0L)).ToArray();
        var positions = prompts.Select(p => LeftPad(Positions(0, p.Length), width, 0L)).ToArray();
        var result = Run(ids, mask, positions, past: null);
        for (var step = 0; step < steps; step++)
        {
            var next = new long[prompts.Length][];
            for (var b = 0; b < prompts.Length; b++)
            {
                var logits = Row(result.Logits, b, (int)result.Logits.Shape[1] - 1);
                AssertClose(alone[b].Logits[step], logits);
                var token = ArgMax(logits);
                Assert.Equal(alone[b].Tokens[step], token);
                next[b] = [token];
                mask[b] = [.. mask[b], 1L];
                positions[b] = [prompts[b].Length + step];
            }

            result = Run(next, mask, positions, result.Present);
        }
    }

    [Fact]
    public void Run_PrefillInTwoChunks_EqualsOneShotPrefill()
    {
        var prompt = Tokens("Once upon a time");
        const int split = 7;
        var oneShot = Run([prompt], [Ones(prompt.Length)], [Positions(0, prompt.Length)], past: null);

        var first = Run([prompt[..split]], [Ones(split)], [Positions(0, split)], past: null);
        var second = Run([prompt[split..]], [Ones(prompt.Length)], [Positions(split, prompt.Length - split)], first.Present);

        Assert.Equal([1L, prompt.Length - split, TinyLm.VocabSize], second.Logits.Shape);
        for (var i = split; i < prompt.Length; i++)
        {
            AssertClose(Row(oneShot.Logits, 0, i), Row(second.Logits, 0, i - split));
        }

        for (var i = 0; i < oneShot.Present.Length; i++)
        {
            Assert.Equal(oneShot.Present[i].Shape, second.Present[i].Shape);
            AssertClose(oneShot.Present[i].Data, second.Present[i].Data);
        }
    }

    [Fact]
    public void Run_BatchWithPaddingAndAnEmptyRow_NoNaNAnywhere()
    {
        long[][] ids = [Tokens("Hello, world"), [0, 0, 0, 0, 0, 0, 0, 0, .. Tokens("Hey!")], new long[12]];
        long[][] mask = [Ones(12), LeftPad(Ones(4), 12, 0L), new long[12]];
        long[][] positions = [Positions(0, 12), LeftPad(Positions(0, 4), 12, 0L), new long[12]];

        var prefill = Run(ids, mask, positions, past: null);
        var step = Run([[10], [32], [0]], [[.. mask[0], 1], [.. mask[1], 1], [.. mask[2], 0]], [[12], [4], [0]], prefill.Present);

        foreach (var tensor in new[] { prefill.Logits, step.Logits }.Concat(prefill.Present).Concat(step.Present))
        {
            Assert.DoesNotContain(tensor.Data, float.IsNaN);
            Assert.All(tensor.Data, v => Assert.True(float.IsFinite(v)));
        }
    }

    [Fact]
    public void EnsureIn_CalledTwice_WritesOnceThenLeavesTheFolderAlone()
    {
        using var repository = new TempFolder();

        Assert.True(TinyLm.EnsureIn(repository.Path));
        var config = Path.Combine(repository.Path, TinyLm.Name, "config.json");
        File.WriteAllText(config, "{\"kind\":\"decoder\"}");
        Assert.False(TinyLm.EnsureIn(repository.Path));

        Assert.Equal("{\"kind\":\"decoder\"}", File.ReadAllText(config));
        Assert.Equal(File.ReadAllBytes(model.OnnxPath), File.ReadAllBytes(Path.Combine(repository.Path, TinyLm.Name, "1", "model.onnx")));
        Assert.Equal([TinyLm.Name], Directory.GetDirectories(repository.Path).Select(Path.GetFileName));
    }

    private (List<long> Tokens, List<float[]> Logits) GreedyAlone(long[] prompt, int steps) => GreedyAlone(model.Session, prompt, steps);

    private static (List<long> Tokens, List<float[]> Logits) GreedyAlone(InferenceSession session, long[] prompt, int steps)
    {
        var tokens = new List<long>();
        var logits = new List<float[]>();
        var result = Run(session, [prompt], [Ones(prompt.Length)], [Positions(0, prompt.Length)], past: null);
        for (var step = 0; step < steps; step++)
        {
            var last = Row(result.Logits, 0, (int)result.Logits.Shape[1] - 1);
            var token = ArgMax(last);
            tokens.Add(token);
            logits.Add(last);
            var total = prompt.Length + step + 1;
            result = Run(session, [[token]], [Ones(total)], [[total - 1]], result.Present);
        }

        return (tokens, logits);
    }

    private RunResult Run(long[][] ids, long[][] mask, long[][] positions, Tensor[]? past) => Run(model.Session, ids, mask, positions, past);

    /// <summary>One forward pass; <paramref name="past"/> null means an empty cache (length-0 tensors).</summary>
    private static RunResult Run(InferenceSession session, long[][] ids, long[][] mask, long[][] positions, Tensor[]? past)
    {
        long batch = ids.Length;
        long seq = ids[0].Length;
        past ??= [.. Enumerable.Range(0, 2 * Layers).Select(_ => new Tensor([], [batch, Heads, 0, HeadDim]))];

        var values = new List<OrtValue>
        {
            OrtValue.CreateTensorValueFromMemory(ids.SelectMany(r => r).ToArray(), [batch, seq]),
            OrtValue.CreateTensorValueFromMemory(mask.SelectMany(r => r).ToArray(), [batch, mask[0].Length]),
            OrtValue.CreateTensorValueFromMemory(positions.SelectMany(r => r).ToArray(), [batch, seq]),
        };
        values.AddRange(past.Select(p => OrtValue.CreateTensorValueFromMemory(p.Data, p.Shape)));
        try
        {
            using var options = new RunOptions();
            using var outputs = session.Run(options, session.InputNames, values, session.OutputNames);
            var copied = outputs.Select(o => new Tensor(o.GetTensorDataAsSpan<float>().ToArray(), o.GetTensorTypeAndShape().Shape)).ToArray();
            return new RunResult(copied[0], copied[1..]);
        }
        finally
        {
            foreach (var value in values)
            {
                value.Dispose();
            }
        }
    }

    private static IEnumerable<string> CacheNames(string prefix, string key, string value)
        => Enumerable.Range(0, Layers).SelectMany(l => new[] { $"{prefix}.{l}{key}", $"{prefix}.{l}{value}" });

    private static void AssertTensor(NodeMetadata metadata, Type elementType, string[] symbols, int[] dims)
    {
        Assert.True(metadata.IsTensor);
        Assert.Equal(elementType, metadata.ElementType);
        Assert.Equal(dims, metadata.Dimensions);
        Assert.Equal(symbols, metadata.SymbolicDimensions);
    }

    private static long[] Tokens(string text) => [.. Encoding.UTF8.GetBytes(text).Select(b => (long)b)];

    private static long[] Ones(int count) => [.. Enumerable.Repeat(1L, count)];

    private static long[] Positions(long start, int count) => [.. Enumerable.Range(0, count).Select(i => start + i)];

    private static long[] LeftPad(long[] row, int width, long pad) => [.. Enumerable.Repeat(pad, width - row.Length), .. row];

    private static float[] Row(Tensor logits, int b, int position)
    {
        var vocab = (int)logits.Shape[2];
        var start = ((b * (int)logits.Shape[1]) + position) * vocab;
        return logits.Data[start..(start + vocab)];
    }

    private static long ArgMax(float[] values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }

        return best;
    }

    private static void AssertClose(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        var worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).DefaultIfEmpty(0f).Max();
        Assert.True(worst <= Tolerance, $"largest difference {worst} exceeds {Tolerance}");
    }

    private sealed record Tensor(float[] Data, long[] Shape);

    private sealed record RunResult(Tensor Logits, Tensor[] Present);

    /// <summary>The default tiny-lm, written once to a temporary folder and opened on the CPU.</summary>
    public sealed class ModelFixture : IDisposable
    {
        public ModelFixture()
        {
            TinyLm.Write(Folder.Path);
            using var options = new SessionOptions { IntraOpNumThreads = 1 };
            Session = new InferenceSession(OnnxPath, options);
        }

        public TempFolder Folder { get; } = new();

        public string OnnxPath => Path.Combine(Folder.Path, "1", "model.onnx");

        public InferenceSession Session { get; }

        public void Dispose()
        {
            Session.Dispose();
            Folder.Dispose();
        }
    }

    /// <summary>A fresh folder under the system's temporary folder, deleted on dispose.</summary>
    public sealed class TempFolder : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("tinylm-").FullName;

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
