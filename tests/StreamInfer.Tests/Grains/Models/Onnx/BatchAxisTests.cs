using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models.Onnx;

/// <summary>
/// Inputs and outputs whose batch is not on the first axis, and shared inputs, on the silero-shaped <c>vad</c> test model
/// loaded stateless (the client sends the state, on axis 1).
/// </summary>
public sealed class BatchAxisTests(BatchAxisTests.Models models) : IClassFixture<BatchAxisTests.Models>
{
    private const float Tolerance = 1e-4f;

    [Fact]
    public void Run_StateBatchedOnAxis1_StackedAndSplitAlongItAndEachRowEqualsItsOwnStep()
    {
        var vad = models.Onnx("vad-plain");
        var random = new Random(5);
        var batch = Enumerable.Range(0, 5).Select(i => Request($"r{i}", random, samples: 6, sr: 16000)).ToList();

        var runs = vad.SessionRuns;
        var outcomes = vad.Run(batch);

        Assert.Equal(1, vad.SessionRuns - runs);
        for (var j = 0; j < batch.Count; j++)
        {
            Assert.Null(outcomes[j].Error);
            var (state, output) = TestModels.StatefulStep(Floats(batch[j], "state"), Floats(batch[j], "input"), 16000);
            Assert.Equal([2L, 1, TestModels.StateWidth], Shape(outcomes[j], "stateN"));
            Assert.Equal([1L, 1], Shape(outcomes[j], "output"));
            AssertClose(state, Floats(outcomes[j], "stateN"));
            AssertClose([output], Floats(outcomes[j], "output"));
        }
    }

    [Fact]
    public void Run_RequestWithoutItsBatchAxis_ComesBackWithoutIt()
    {
        var vad = models.Onnx("vad-plain");
        var random = new Random(6);
        var bare = Request("bare", random, samples: 3, sr: 8000, batched: false);
        var batched = Request("batched", random, samples: 3, sr: 8000);

        var outcomes = vad.Run([batched, bare]);

        Assert.Equal([2L, TestModels.StateWidth], Shape(outcomes[1], "stateN"));
        Assert.Equal([1L], Shape(outcomes[1], "output"));
        var (state, output) = TestModels.StatefulStep(Floats(bare, "state"), Floats(bare, "input"), 8000);
        AssertClose(state, Floats(outcomes[1], "stateN"));
        AssertClose([output], Floats(outcomes[1], "output"));
    }

    [Fact]
    public void Run_SharedInputDisagrees_RunsInSeparateGroupsEachWithItsOwnValue()
    {
        var vad = models.Onnx("vad-plain");
        var random = new Random(7);
        var rates = new long[] { 16000, 8000, 16000, 8000, 4000 };
        var batch = rates.Select((sr, i) => Request($"r{i}", random, samples: 4, sr: sr)).ToList();

        var runs = vad.SessionRuns;
        var outcomes = vad.Run(batch);

        Assert.Equal(3, vad.SessionRuns - runs);
        for (var j = 0; j < batch.Count; j++)
        {
            var (state, output) = TestModels.StatefulStep(Floats(batch[j], "state"), Floats(batch[j], "input"), rates[j]);
            AssertClose(state, Floats(outcomes[j], "stateN"));
            AssertClose([output], Floats(outcomes[j], "output"));
        }
    }

    [Theory]
    [InlineData("missing", "'sr' is missing")]
    [InlineData("batched", "'sr': expected shape []")]
    [InlineData("state-axis", "'state': axis 0 must be 2")]
    public void Check_SharedOrBatchAxisWrong_InvalidInputNamingIt(string which, string expected)
    {
        var random = new Random(8);
        var request = Request("r", random, samples: 2, sr: 16000);
        var inputs = which switch
        {
            "missing" => request.Inputs.RemoveAll(i => i.Name == "sr"),
            "batched" => request.Inputs.SetItem(2, new NamedTensor("sr", Int64([1], 16000))),
            "state-axis" => request.Inputs.SetItem(1, new NamedTensor("state", Tensors.Floats([3, 1, TestModels.StateWidth], new float[3 * TestModels.StateWidth]))),
            _ => throw new ArgumentOutOfRangeException(nameof(which)),
        };

        var check = models.Onnx("vad-plain").Check(request with { Inputs = inputs });

        Assert.Equal(ErrorCode.InvalidInput, check.Error?.Code);
        Assert.Contains(expected, check.Error!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Inputs_BatchAxisAndShared_SpecsShowTheModelsOwnShape()
    {
        var vad = models.Onnx("vad-plain");

        Assert.Equal([2L, -1, TestModels.StateWidth], vad.Inputs.Single(i => i.Name == "state").Shape.ToArray());
        Assert.Empty(vad.Inputs.Single(i => i.Name == "sr").Shape);
        Assert.Equal([-1L, -1], vad.Inputs.Single(i => i.Name == "input").Shape.ToArray());
    }

    [Fact]
    public void Load_DimsBesideBatchAxis_ReadInOrderWithoutIt()
    {
        var vad = models.Onnx("vad-dims");

        Assert.Equal([2L, -1, TestModels.StateWidth], vad.Inputs.Single(i => i.Name == "state").Shape.ToArray());
    }

    [Fact]
    public void Load_WithoutBatchAxisOrShared_RefusedNamingBoth()
    {
        var errors = models.Errors("vad-undeclared");

        Assert.Contains(errors, e => e.Contains("the first axis of input 'state' is fixed at 2", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("input 'sr' is a scalar", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_MetadataMaxOnAxis0BesideBatchAxis1_BoundsThatAxis()
    {
        var frames = models.Onnx("frames");

        Assert.Equal(4, frames.Signature.AxisMax["n"]);
    }

    internal static InferRequest Request(string id, Random random, int samples, long sr, bool batched = true)
    {
        var input = Enumerable.Range(0, samples).Select(_ => random.Next(-8, 9) / 4f).ToArray();
        var state = Enumerable.Range(0, 2 * TestModels.StateWidth).Select(_ => random.Next(-8, 9) / 4f).ToArray();
        return new InferRequest(id, "vad", [
            new NamedTensor("input", Tensors.Floats(batched ? [1, samples] : [samples], input)),
            new NamedTensor("state", Tensors.Floats(batched ? [2, 1, TestModels.StateWidth] : [2, TestModels.StateWidth], state)),
            new NamedTensor("sr", Int64([], sr)),
        ], null, null, "nowhere");
    }

    internal static Tensor Int64(long[] shape, params long[] values)
        => new(TensorElementType.Int64, [.. shape], MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), []);

    internal static float[] Floats(InferRequest request, string name) => Floats(request.Inputs.Single(i => i.Name == name).Tensor);

    internal static float[] Floats(ItemOutcome outcome, string name)
    {
        Assert.Null(outcome.Error);
        return Floats(outcome.Outputs.Single(o => o.Name == name).Tensor);
    }

    internal static float[] Floats(Tensor tensor) => MemoryMarshal.Cast<byte, float>(tensor.Data.Span).ToArray();

    internal static void AssertClose(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= Tolerance * Math.Max(1, Math.Abs(expected[i])), $"element {i}: expected {expected[i]}, got {actual[i]}");
        }
    }

    private static long[] Shape(ItemOutcome outcome, string name) => [.. outcome.Outputs.Single(o => o.Name == name).Tensor.Shape];

    /// <summary>The <c>vad</c> model loaded stateless under several configs, on the CPU, outside any cluster.</summary>
    public sealed class Models : IAsyncLifetime, IDisposable
    {
        private readonly string _root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        private readonly DeviceRegistry _devices = new(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
        private ModelStack? _stack;

        internal OnnxTensorModel Onnx(string name)
        {
            Assert.True(_stack!.Catalog.TryGet(name, out var entry), $"model {name} is in the catalog");
            Assert.Equal(ModelState.Ready, entry.State);
            return Assert.IsType<OnnxTensorModel>(entry.Any);
        }

        public IEnumerable<string> Errors(string name) => _stack!.Catalog.Status.Errors.Where(e => e.Model == name).Select(e => e.Reason);

        public async Task InitializeAsync()
        {
            TestModels.WriteStateful(_root, "vad-plain", sequence: false);
            TestModels.WriteStateful(_root, "vad-dims", sequence: false);
            File.WriteAllText(Path.Combine(_root, "vad-dims", "config.json"), """
                { "kind": "tensor", "max_batch_size": 8,
                  "inputs": [{ "name": "state", "batch_axis": 1, "dims": [2, 4] }, { "name": "sr", "shared": true, "dims": [] }],
                  "outputs": [{ "name": "output" }, { "name": "stateN", "batch_axis": 1, "dims": [2, 4] }] }
                """);
            TestModels.WriteStateful(_root, "vad-undeclared", sequence: false);
            File.WriteAllText(Path.Combine(_root, "vad-undeclared", "config.json"), """{ "kind": "tensor", "max_batch_size": 8 }""");
            WriteFrames(Path.Combine(_root, "frames"));
            _stack = new ModelStack(_root, _devices, builtInTinyLm: false);
            await _stack.StartAsync();
        }

        /// <summary><c>frames</c>: y = x, both [n, batch] with the batch on axis 1, the file bounding <c>n</c> at 4.</summary>
        private static void WriteFrames(string folder)
        {
            var g = new OnnxGraphBuilder("frames");
            g.Input("x", TensorElementType.Float32, "n", "batch");
            g.Node("Identity", ["x"], "y");
            g.Output("y", TensorElementType.Float32, "n", "batch");
            var model = g.Build();
            model.MetadataProps.Add(new global::Onnx.StringStringEntryProto { Key = TensorSignature.AxisMaxMetadataPrefix + "n", Value = "4" });
            Directory.CreateDirectory(Path.Combine(folder, "1"));
            File.WriteAllBytes(Path.Combine(folder, "1", "model.onnx"), Google.Protobuf.MessageExtensions.ToByteArray(model));
            File.WriteAllText(Path.Combine(folder, "config.json"), """
                { "kind": "tensor", "max_batch_size": 8,
                  "inputs": [{ "name": "x", "batch_axis": 1 }], "outputs": [{ "name": "y", "batch_axis": 1 }] }
                """);
        }

        public Task DisposeAsync() => Task.CompletedTask;

        public void Dispose()
        {
            _stack?.Dispose();
            _devices.Dispose();
        }
    }
}
