using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models.Onnx;

/// <summary>
/// Padding that cannot be abused: the outlier split, the batch byte cap, per-axis maxima and per-model request limits,
/// batches that fail only their faulty request, and staging buffers that shrink back. On the <c>image</c> test model,
/// whose <c>seen</c> output tells the height and width a request was run at.
/// </summary>
public sealed class PaddingTests(PaddingTests.Models models) : IClassFixture<PaddingTests.Models>
{
    [Fact]
    public void Run_OneRowTallAndOneRowWide_EachRunsUnpaddedAndGetsItsResult()
    {
        var image = models.Model("image");
        var tall = Pixels("tall", 8192, 1, seed: 1);
        var wide = Pixels("wide", 1, 8192, seed: 2);

        var outcomes = image.Run([tall, wide]);

        // Padded together they would be [2,3,8192,8192]: 1.6 GB.
        Assert.Equal([8192L, 1], Seen(outcomes[0]));
        Assert.Equal([1L, 8192], Seen(outcomes[1]));
        AssertSums(tall, outcomes[0]);
        AssertSums(wide, outcomes[1]);
    }

    [Fact]
    public void Run_LongRequestAmongShortOnes_RunsApartAndOutputsEqualAlone()
    {
        var image = models.Onnx("image");
        var batch = Enumerable.Range(0, 5).Select(i => Pixels($"short{i}", 4, 4 + i, seed: i)).ToList();
        batch.Insert(2, Pixels("long", 4, 4000, seed: 9));
        var alone = batch.Select(r => image.Run([r])[0]).ToList();

        var runs = image.SessionRuns;
        var outcomes = image.Run(batch);

        Assert.Equal(2, image.SessionRuns - runs);
        Assert.Equal([4L, 4000], Seen(outcomes[2]));
        foreach (var j in new[] { 0, 1, 3, 4, 5 })
        {
            // The short ones ran together, padded to the longest of them only.
            Assert.Equal([4L, 8], Seen(outcomes[j]));
        }

        for (var j = 0; j < batch.Count; j++)
        {
            Assert.Equal(Floats(alone[j], "sums"), Floats(outcomes[j], "sums"));
        }
    }

    [Fact]
    public void Run_RequestsOfLikeLengths_StillPaddedTogether()
    {
        var image = models.Onnx("image");
        var runs = image.SessionRuns;

        var outcomes = image.Run([Pixels("a", 4, 100, seed: 1), Pixels("b", 4, 90, seed: 2), Pixels("c", 4, 97, seed: 3)]);

        Assert.Equal(1, image.SessionRuns - runs);
        Assert.All(outcomes, o => Assert.Equal([4L, 100], Seen(o)));
    }

    [Fact]
    public void Run_BatchPastMaxBatchBytes_CutIntoGroupsUnderTheCap()
    {
        // max_batch_bytes 4096; each request takes 3·10·10·4 = 1200 bytes: three fit, the fourth runs in a second group.
        var image = models.Onnx("image-tiny-batches");
        var batch = Enumerable.Range(0, 4).Select(i => Pixels($"r{i}", 10, 10, seed: i)).ToList();
        var runs = image.SessionRuns;

        var outcomes = image.Run(batch);

        Assert.Equal(2, image.SessionRuns - runs);
        for (var j = 0; j < batch.Count; j++)
        {
            AssertSums(batch[j], outcomes[j]);
        }
    }

    [Fact]
    public void Run_OneRequestsDataShorterThanItsShape_OnlyItFails()
    {
        var image = models.Model("image");
        var good = Pixels("good", 2, 2, seed: 1);
        // Admission would refuse it; handed to Run directly, building the batch throws on it.
        var broken = new InferRequest("broken", "image", [new NamedTensor("pixels", Tensors.Floats([1, 3, 2, 2], new float[1]))], null, null, "nowhere");
        var other = Pixels("other", 2, 2, seed: 2);

        var outcomes = image.Run([good, broken, other]);

        AssertSums(good, outcomes[0]);
        Assert.Equal(ErrorCode.Internal, outcomes[1].Error?.Code);
        Assert.Contains("image", outcomes[1].Error!.Message, StringComparison.Ordinal);
        AssertSums(other, outcomes[2]);
    }

    [Fact]
    public void Run_OneRequestPastWhatAStagingBufferHolds_OnlyItGetsPayloadTooLarge()
    {
        var image = models.Model("image");
        var good = Pixels("good", 2, 2, seed: 1);
        // 3·2^20·2^20 floats: its sizes would overflow the buffer's int length; its data is never read.
        var huge = new InferRequest("huge", "image", [new NamedTensor("pixels", Tensors.Floats([1, 3, 1 << 20, 1 << 20], new float[1]))], null, null, "nowhere");

        var outcomes = image.Run([good, huge]);

        AssertSums(good, outcomes[0]);
        Assert.Equal(ErrorCode.PayloadTooLarge, outcomes[1].Error?.Code);
        Assert.Contains("'pixels'", outcomes[1].Error!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_OneLargeBatch_StagingBufferShrinksBackAfterIt()
    {
        var image = models.Onnx("image-pinned");
        var small = Pixels("small", 4, 4, seed: 1);
        var large = Pixels("large", 512, 1024, seed: 2);
        for (var i = 0; i < 3; i++)
        {
            image.Run([small]);
        }

        Assert.Null(image.Run([large])[0].Error);
        // A spike: its 6 MiB buffer goes once it has run.
        Assert.True(image.StagingBytes < 1 << 20, $"holds {image.StagingBytes} bytes after one large batch");

        image.Run([large]);
        image.Run([large]);
        // Large batches in a row keep their buffer.
        Assert.True(image.StagingBytes >= 6 << 20, $"holds {image.StagingBytes} bytes while large batches keep coming");

        for (var i = 0; i < 16; i++)
        {
            image.Run([small]);
        }

        Assert.True(image.StagingBytes < 1 << 20, $"holds {image.StagingBytes} bytes once only small batches came");
    }

    [Fact]
    public void Check_AxisPastConfiguredMax_InvalidInputNamingAxisAndMax()
    {
        var capped = models.Model("image-capped");

        var past = capped.Check(Pixels("r", 2, 4097, seed: 1));
        var at = capped.Check(Pixels("r", 2, 4096, seed: 1));

        Assert.Equal(ErrorCode.InvalidInput, past.Error?.Code);
        Assert.Contains("'width' is 4097", past.Error!.Message, StringComparison.Ordinal);
        Assert.Contains("at most 4096", past.Error.Message, StringComparison.Ordinal);
        Assert.Null(at.Error);
    }

    [Fact]
    public void Check_AxisPastMetadataMax_InvalidInputNamingAxisAndMax()
    {
        var bounded = models.Model("image-meta");

        var past = bounded.Check(Pixels("r", 65, 1, seed: 1));

        Assert.Equal(ErrorCode.InvalidInput, past.Error?.Code);
        Assert.Contains("'height' is 65", past.Error!.Message, StringComparison.Ordinal);
        Assert.Contains("at most 64", past.Error.Message, StringComparison.Ordinal);
        Assert.Null(bounded.Check(Pixels("r", 64, 1, seed: 1)).Error);
    }

    [Fact]
    public void Check_PayloadPastMaxRequestBytes_PayloadTooLargeNamingTheLimit()
    {
        var capped = models.Model("image-capped");

        // 3·300·300·4 = 1,080,000 bytes; the model takes 1 MiB.
        var check = capped.Check(Pixels("r", 300, 300, seed: 1));

        Assert.Equal(ErrorCode.PayloadTooLarge, check.Error?.Code);
        Assert.Contains("1080000", check.Error!.Message, StringComparison.Ordinal);
        Assert.Contains("at most 1048576", check.Error.Message, StringComparison.Ordinal);
        Assert.Null(capped.Check(Pixels("r", 200, 200, seed: 1)).Error);
    }

    [Fact]
    public void Check_RequestAlonePastMaxBatchBytes_PayloadTooLargeNamingTheCap()
    {
        var check = models.Model("image-tiny-batches").Check(Pixels("r", 20, 20, seed: 1));

        Assert.Equal(ErrorCode.PayloadTooLarge, check.Error?.Code);
        Assert.Contains("at most 4096 bytes (max_batch_bytes)", check.Error!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_AxisMaxima_ListedBySignature()
    {
        Assert.Equal(4096, models.Onnx("image-capped").Signature.AxisMax["width"]);
        Assert.Equal(64, models.Onnx("image-meta").Signature.AxisMax["height"]);
        Assert.Empty(models.Onnx("image").Signature.AxisMax);
    }

    private static InferRequest Pixels(string id, long height, long width, int seed)
    {
        var random = new Random(seed);
        var values = new float[3 * height * width];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = random.Next(-4, 5);
        }

        return new InferRequest(id, "image", [new NamedTensor("pixels", Tensors.Floats([1, 3, height, width], values))], null, null, "nowhere");
    }

    private static long[] Seen(ItemOutcome outcome)
    {
        Assert.Null(outcome.Error);
        var tensor = outcome.Outputs.Single(o => o.Name == "seen").Tensor;
        var values = new long[tensor.Data.Length / 8];
        tensor.Data.Span.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    private static float[] Floats(ItemOutcome outcome, string name)
    {
        Assert.Null(outcome.Error);
        var tensor = outcome.Outputs.Single(o => o.Name == name).Tensor;
        var values = new float[tensor.Data.Length / 4];
        tensor.Data.Span.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    // The pixels are small whole numbers, so each channel's sum is exact in float32 whatever the order of addition.
    private static void AssertSums(InferRequest request, ItemOutcome outcome)
    {
        var tensor = request.Inputs[0].Tensor;
        var pixels = new float[tensor.Data.Length / 4];
        tensor.Data.Span.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(pixels.AsSpan()));
        var plane = pixels.Length / 3;
        var expected = Enumerable.Range(0, 3).Select(c => pixels.Skip(c * plane).Take(plane).Sum()).ToArray();
        Assert.Equal(expected, Floats(outcome, "sums"));
    }

    /// <summary>The <c>image</c> model loaded under several configs, on the CPU, outside any cluster.</summary>
    public sealed class Models : IAsyncLifetime, IDisposable
    {
        private readonly string _root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        private readonly DeviceRegistry _devices = new(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
        private ModelStack? _stack;

        public IBatchModel Model(string name)
        {
            Assert.True(_stack!.Catalog.TryGet(name, out var entry), $"model {name} is in the catalog");
            Assert.Equal(ModelState.Ready, entry.State);
            return Assert.IsAssignableFrom<IBatchModel>(entry.Any);
        }

        internal OnnxTensorModel Onnx(string name) => Assert.IsType<OnnxTensorModel>(Model(name));

        public async Task InitializeAsync()
        {
            TestModels.WriteImage(_root);
            TestModels.WriteImage(_root, "image-pinned");
            TestModels.WriteImage(_root, "image-capped", """, "max_request_bytes": 1048576, "inputs": [{"name": "pixels", "dims": [3, "height", {"name": "width", "max": 4096}]}]""");
            TestModels.WriteImage(_root, "image-tiny-batches", """, "max_batch_bytes": 4096""");
            TestModels.WriteImage(_root, "image-meta", metadata: new Dictionary<string, string> { [TensorSignature.AxisMaxMetadataPrefix + "height"] = "64" });
            _stack = new ModelStack(_root, _devices, builtInTinyLm: false);
            await _stack.StartAsync();
            var failed = _stack.Catalog.Status.Errors;
            Assert.True(failed.IsEmpty, string.Join("; ", failed));
        }

        public Task DisposeAsync() => Task.CompletedTask;

        public void Dispose()
        {
            _stack?.Dispose();
            _devices.Dispose();
        }
    }
}
