using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Stateful;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Grains.Models.Decoding;

namespace StreamInfer.Tests.Grains.Models.Stateful;

/// <summary>
/// The generated vad-lite on bare ONNX Runtime against its C# reference: silero VAD v5's signature, and outputs and
/// states equal bit for bit, chunk after chunk, alone and with sequences stacked on the state's axis 1.
/// </summary>
public sealed class VadLiteTests(VadLiteTests.ModelFixture model) : IClassFixture<VadLiteTests.ModelFixture>
{
    private const int Width = VadLite.StateWidth;

    [Fact]
    public void Write_Default_HasSileroV5Signature()
    {
        Assert.Equal(["input", "state", "sr"], model.Session.InputNames);
        Assert.Equal(["output", "stateN"], model.Session.OutputNames);
        var inputs = model.Session.InputMetadata;
        var outputs = model.Session.OutputMetadata;
        AssertTensor(inputs["input"], typeof(float), [-1, -1]);
        AssertTensor(inputs["state"], typeof(float), [2, -1, Width]);
        AssertTensor(inputs["sr"], typeof(long), []);
        AssertTensor(outputs["output"], typeof(float), [-1, 1]);
        AssertTensor(outputs["stateN"], typeof(float), [2, -1, Width]);
    }

    [Fact]
    public void Write_Default_ConfigDeclaresTheStatePairAndTheSharedRate()
    {
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(model.Folder.Path, "config.json")));
        var root = config.RootElement;
        Assert.Equal("tensor", root.GetProperty("kind").GetString());
        var inputs = root.GetProperty("inputs").EnumerateArray().ToDictionary(i => i.GetProperty("name").GetString()!);
        Assert.Equal(1, inputs["state"].GetProperty("batch_axis").GetInt32());
        Assert.True(inputs["sr"].GetProperty("shared").GetBoolean());
        var outputs = root.GetProperty("outputs").EnumerateArray().ToDictionary(o => o.GetProperty("name").GetString()!);
        Assert.Equal(1, outputs["stateN"].GetProperty("batch_axis").GetInt32());
        var sequence = root.GetProperty("sequence");
        var pair = Assert.Single(sequence.GetProperty("state").EnumerateArray());
        Assert.Equal("state", pair.GetProperty("input").GetString());
        Assert.Equal("stateN", pair.GetProperty("output").GetString());
        Assert.Equal(60000, sequence.GetProperty("idle_timeout_ms").GetInt32());
        Assert.Equal(4096, sequence.GetProperty("max_sequences").GetInt32());
    }

    [Fact]
    public void Write_Twice_GivesIdenticalBytes()
    {
        using var other = new TinyLmTests.TempFolder();
        VadLite.Write(other.Path);

        Assert.Equal(File.ReadAllBytes(model.OnnxPath), File.ReadAllBytes(Path.Combine(other.Path, "1", "model.onnx")));
    }

    [Fact]
    public void Run_OneSequenceFedItsOwnState_EqualsTheReferenceExactly()
    {
        var reference = new VadLiteReference();
        var state = new float[VadLite.StateSize];
        var outputs = new List<float>();
        for (var chunk = 0; chunk < 40; chunk++)
        {
            var samples = VadLiteReference.Chunk(3, chunk);
            var (output, stateN) = model.Run([samples], state, batch: 1, VadLite.ReferenceSampleRate);
            var expected = reference.Next(samples);

            Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(output[0]));
            Assert.Equal(reference.State.ToArray(), stateN);
            Assert.Equal(chunk + 1, stateN[Width]);
            outputs.Add(output[0]);
            state = stateN;
        }

        // The chunks mix loud and quiet, so the score crosses 0.5 both ways.
        Assert.Contains(outputs, o => o > 0.9f);
        Assert.Contains(outputs, o => o < 0.5f);
    }

    [Fact]
    public void Run_SequencesStackedOnAxisOne_EachEqualsItsReferenceAlone()
    {
        // Five sequences batched chunk after chunk, the batch's state gathered from theirs (row b of axis 1) and
        // scattered back; sequence 4's chunks are half as long, padded with zeros to the batch's length.
        const int Batch = 5;
        var references = Enumerable.Range(0, Batch).Select(_ => new VadLiteReference()).ToArray();
        var states = Enumerable.Range(0, Batch).Select(_ => new float[VadLite.StateSize]).ToArray();
        for (var chunk = 0; chunk < 30; chunk++)
        {
            var own = Enumerable.Range(0, Batch).Select(b => VadLiteReference.Chunk(b, chunk, b == 4 ? VadLite.ChunkSamples / 2 : VadLite.ChunkSamples)).ToArray();
            var padded = own.Select(c => c.Concat(new float[VadLite.ChunkSamples - c.Length]).ToArray()).ToArray();
            var (output, stateN) = model.Run(padded, Gather(states), Batch, VadLite.ReferenceSampleRate);
            Scatter(stateN, states);

            for (var b = 0; b < Batch; b++)
            {
                Assert.Equal(BitConverter.SingleToInt32Bits(references[b].Next(own[b])), BitConverter.SingleToInt32Bits(output[b]));
                Assert.Equal(references[b].State.ToArray(), states[b]);
            }
        }

        Assert.NotEqual(references[0].State.ToArray(), references[1].State.ToArray());
    }

    [Fact]
    public void Write_WithBallast_SameOutputsAsTheReference()
    {
        using var folder = new TinyLmTests.TempFolder();
        VadLite.Write(folder.Path, ballast: 256);
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 2 };
        using var session = new InferenceSession(Path.Combine(folder.Path, "1", "model.onnx"), options);
        var references = new[] { new VadLiteReference(), new VadLiteReference() };
        var states = new[] { new float[VadLite.StateSize], new float[VadLite.StateSize] };
        for (var chunk = 0; chunk < 10; chunk++)
        {
            var rows = new[] { VadLiteReference.Chunk(0, chunk), VadLiteReference.Chunk(1, chunk) };
            var (output, stateN) = ModelFixture.Run(session, rows, Gather(states), 2, VadLite.ReferenceSampleRate);
            Scatter(stateN, states);
            for (var b = 0; b < 2; b++)
            {
                Assert.Equal(references[b].Next(rows[b]), output[b]);
                Assert.Equal(references[b].State.ToArray(), states[b]);
            }
        }
    }

    [Fact]
    public void Run_SameChunkTwice_OutputFollowsTheState()
    {
        var loud = Enumerable.Repeat(0.5f, VadLite.ChunkSamples).ToArray();
        var state = new float[VadLite.StateSize];
        var (first, stateN) = model.Run([loud], state, 1, VadLite.ReferenceSampleRate);
        var (second, _) = model.Run([loud], stateN, 1, VadLite.ReferenceSampleRate);

        Assert.True(second[0] > first[0], $"the level rises on a second loud chunk: {first[0]} then {second[0]}");
    }

    [Fact]
    public void Run_OtherSampleRate_ChangesTheOutput()
    {
        var samples = VadLiteReference.Chunk(0, 1);
        var state = new float[VadLite.StateSize];
        var (at16k, _) = model.Run([samples], state, 1, 16000);
        var (at8k, _) = model.Run([samples], state, 1, 8000);

        Assert.NotEqual(at16k[0], at8k[0]);
        Assert.Equal(new VadLiteReference().Next(samples, 8000), at8k[0]);
    }

    [Fact]
    public void EnsureIn_FolderThere_LeavesItAsItIs()
    {
        using var repository = new TinyLmTests.TempFolder();
        Assert.True(VadLite.EnsureIn(repository.Path));
        var config = Path.Combine(repository.Path, VadLite.Name, "config.json");
        File.WriteAllText(config, """{"kind": "tensor", "max_batch_size": 8}""");

        Assert.False(VadLite.EnsureIn(repository.Path));

        Assert.Equal("""{"kind": "tensor", "max_batch_size": 8}""", File.ReadAllText(config));
        Assert.Equal([VadLite.Name], Directory.GetDirectories(repository.Path).Select(Path.GetFileName));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void EnsureWritten_VadLiteOption_WritesTheModelOnlyWhenOn(bool on)
    {
        using var repository = new TinyLmTests.TempFolder();
        var options = Microsoft.Extensions.Options.Options.Create(new ModelRepositoryOptions { Path = repository.Path, BuiltInTinyLm = false, BuiltInVadLite = on });

        new BuiltInModels(options, NullLogger<BuiltInModels>.Instance).EnsureWritten();

        Assert.Equal(on, File.Exists(Path.Combine(repository.Path, VadLite.Name, "1", "model.onnx")));
        Assert.False(Directory.Exists(Path.Combine(repository.Path, "tiny-lm")));
    }

    [Fact]
    public void RepositoryOptions_Default_WritesVadLite()
        => Assert.True(new ModelRepositoryOptions().BuiltInVadLite);

    private static float[] Gather(float[][] states)
    {
        var batch = new float[2 * states.Length * Width];
        for (var b = 0; b < states.Length; b++)
        {
            for (var row = 0; row < 2; row++)
            {
                states[b].AsSpan(row * Width, Width).CopyTo(batch.AsSpan(((row * states.Length) + b) * Width));
            }
        }

        return batch;
    }

    private static void Scatter(float[] batch, float[][] states)
    {
        for (var b = 0; b < states.Length; b++)
        {
            for (var row = 0; row < 2; row++)
            {
                batch.AsSpan(((row * states.Length) + b) * Width, Width).CopyTo(states[b].AsSpan(row * Width));
            }
        }
    }

    private static void AssertTensor(NodeMetadata metadata, Type elementType, int[] dims)
    {
        Assert.Equal(elementType, metadata.ElementType);
        Assert.Equal(dims, metadata.Dimensions);
    }

    /// <summary>The default vad-lite, written once to a temporary folder and opened with the grid's CPU optimizations.</summary>
    public sealed class ModelFixture : IDisposable
    {
        public ModelFixture()
        {
            VadLite.Write(Folder.Path);
            using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 2 };
            Session = new InferenceSession(OnnxPath, options);
        }

        public TinyLmTests.TempFolder Folder { get; } = new();

        public string OnnxPath => Path.Combine(Folder.Path, "1", "model.onnx");

        public InferenceSession Session { get; }

        /// <summary>One run: <paramref name="rows"/> chunks of one length, the batch's state [2, batch, 128]; returns output and stateN.</summary>
        public (float[] Output, float[] StateN) Run(float[][] rows, float[] state, int batch, long sampleRate)
            => Run(Session, rows, state, batch, sampleRate);

        /// <summary>One run of <paramref name="session"/>, as <see cref="Run(float[][], float[], int, long)"/>.</summary>
        public static (float[] Output, float[] StateN) Run(InferenceSession session, float[][] rows, float[] state, int batch, long sampleRate)
        {
            var samples = rows[0].Length;
            using var input = OrtValue.CreateTensorValueFromMemory(rows.SelectMany(r => r).ToArray(), [batch, samples]);
            using var stateValue = OrtValue.CreateTensorValueFromMemory(state.ToArray(), [2, batch, Width]);
            using var sr = OrtValue.CreateTensorValueFromMemory(new[] { sampleRate }, []);
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, ["input", "state", "sr"], [input, stateValue, sr], ["output", "stateN"]);
            return (results[0].GetTensorDataAsSpan<float>().ToArray(), results[1].GetTensorDataAsSpan<float>().ToArray());
        }

        public void Dispose()
        {
            Session.Dispose();
            Folder.Dispose();
        }
    }
}
