using System.Collections.Immutable;
using StreamInfer.Grains.Models;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models.Onnx;

/// <summary>The tensor engine called directly: batch assembly, padding and masks, splitting, per-request checks.</summary>
public sealed class OnnxTensorModelTests(OnnxModelsFixture models) : IClassFixture<OnnxModelsFixture>
{
    private const float Tolerance = 1e-5f;

    [Fact]
    public void Run_RandomBatchesOfMixedLengths_EachRequestEqualsItsOutputsAlone()
    {
        var seq = models.Model("seq");
        var random = new Random(1234);
        for (var size = 1; size <= 8; size++)
        {
            var batch = Enumerable.Range(0, size).Select(i => SeqRequest($"r{i}", random.Next(1, 9), random, withMask: i % 2 == 0)).ToList();
            var together = seq.Run(batch);
            Assert.Equal(size, together.Count);
            for (var i = 0; i < size; i++)
            {
                var alone = seq.Run([batch[i]])[0];
                AssertSameOutputs(alone, together[i]);
            }
        }
    }

    [Fact]
    public void Run_ShortPaddedBesideLong_OutputsCutBackAndEqualAlone()
    {
        var seq = models.Model("seq");
        var random = new Random(7);
        var shortOne = SeqRequest("short", 2, random, withMask: false);
        var longOne = SeqRequest("long", 7, random, withMask: true);

        var together = seq.Run([shortOne, longOne]);
        var hidden = Output(together[0], "hidden");
        Assert.Equal([1L, 2, 3], hidden.Shape.ToArray());
        Assert.Equal([1L, 7, 3], Output(together[1], "hidden").Shape.ToArray());
        Assert.Equal([1L, 3], Output(together[0], "pooled").Shape.ToArray());
        AssertSameOutputs(seq.Run([shortOne])[0], together[0]);
        AssertSameOutputs(seq.Run([longOne])[0], together[1]);
    }

    [Fact]
    public void Run_RequestsWithSeveralRowsAndNoBatchAxis_SplitBackInTheirOwnForm()
    {
        var multi = models.Model("multi");
        var twoRows = MultiRequest("two", rows: 2, batched: true, seed: 1);
        var bare = MultiRequest("bare", rows: 1, batched: false, seed: 2);
        var outcomes = multi.Run([twoRows, bare]);

        Assert.Equal([2L, 3], Output(outcomes[0], "f32_out").Shape.ToArray());
        Assert.Equal([3L], Output(outcomes[1], "f32_out").Shape.ToArray());
        Assert.Equal([2L, 1], Output(outcomes[0], "i64_sum").Shape.ToArray());
        Assert.Equal(Floats(Input(twoRows, "f32")).Select(v => v * 2), Floats(Output(outcomes[0], "f32_out")));
        Assert.Equal(Floats(Input(bare, "f32")).Select(v => v * 2), Floats(Output(outcomes[1], "f32_out")));
        Assert.Equal(Input(bare, "text").Strings.ToArray(), Output(outcomes[1], "text_out").Strings.ToArray());
        Assert.Equal(Input(twoRows, "text").Strings.ToArray(), Output(outcomes[0], "text_out").Strings.ToArray());
        Assert.Equal(
            Input(twoRows, "flag").Data.ToArray().Select(b => (byte)(b == 0 ? 1 : 0)),
            Output(outcomes[0], "flag_out").Data.ToArray());
        var i64 = Longs(Input(twoRows, "i64"));
        Assert.Equal([i64[0] + i64[1], i64[2] + i64[3]], Longs(Output(outcomes[0], "i64_sum")));
    }

    [Fact]
    public void Run_OneRequestFailsOnItsValues_OnlyItGetsInvalidInput()
    {
        var lookup = models.Model("lookup");
        var outcomes = lookup.Run([Ids("a", 3), Ids("bad", 50), Ids("c", 9)]);

        Assert.Null(outcomes[0].Error);
        Assert.Equal([6f, 7f], Floats(Output(outcomes[0], "vectors")));
        Assert.Equal(ErrorCode.InvalidInput, outcomes[1].Error?.Code);
        Assert.Contains("lookup", outcomes[1].Error!.Message, StringComparison.Ordinal);
        Assert.Null(outcomes[2].Error);
        Assert.Equal([18f, 19f], Floats(Output(outcomes[2], "vectors")));
    }

    public static TheoryData<string, string[]> BadRequests => new()
    {
        { "wrong-type", ["tokens", "expected float32, got int32"] },
        { "unknown-input", ["'nope'", "no such input"] },
        { "missing-input", ["'tokens' is missing"] },
        { "fixed-dim", ["tokens", "axis 2 must be 4, got 5"] },
        { "rank", ["tokens", "expected shape"] },
        { "axis-disagrees", ["mask", "'seq' is 3", "is 4 in input 'tokens'"] },
        { "too-many-rows", ["tokens", "1 to 8 rows"] },
        { "data-short", ["tokens", "needs 8 elements, data has 7"] },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public void Check_BadRequest_InvalidInputNamingInputAndMismatch(string which, string[] expected)
    {
        var tokens = (long[] shape) => new NamedTensor("tokens", Tensors.Floats(shape, new float[shape.Aggregate(1L, (a, b) => a * b)]));
        var inputs = which switch
        {
            "wrong-type" => [new NamedTensor("tokens", new Tensor(TensorElementType.Int32, [1, 2, 4], new byte[32], []))],
            "unknown-input" => [tokens([1, 2, 4]), new NamedTensor("nope", Tensors.Floats([1], 1f))],
            "missing-input" => ImmutableArray.Create(new NamedTensor("mask", Longs([1, 2], 1, 1))),
            "fixed-dim" => [tokens([1, 2, 5])],
            "rank" => [tokens([2, 4, 1, 1])],
            "axis-disagrees" => [tokens([1, 4, 4]), new NamedTensor("mask", Longs([1, 3], 1, 1, 1))],
            "too-many-rows" => [tokens([9, 1, 4])],
            "data-short" => [new NamedTensor("tokens", Tensors.Floats([1, 2, 4], new float[7]))],
            _ => throw new ArgumentOutOfRangeException(nameof(which)),
        };

        var check = models.Model("seq").Check(new InferRequest("r", "seq", inputs, null, null, "nowhere"));

        Assert.Equal(ErrorCode.InvalidInput, check.Error?.Code);
        foreach (var part in expected)
        {
            Assert.Contains(part, check.Error!.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Check_GoodRequest_CountsItsRows()
    {
        var seq = models.Model("seq");
        var three = new InferRequest("r", "seq", [new NamedTensor("tokens", Tensors.Floats([3, 2, 4], new float[24]))], null, null, "nowhere");
        var bare = new InferRequest("r", "seq", [new NamedTensor("tokens", Tensors.Floats([2, 4], new float[8]))], null, null, "nowhere");

        Assert.Equal(new RequestCheck(null, 3), seq.Check(three));
        Assert.Equal(new RequestCheck(null, 1), seq.Check(bare));
    }

    private static InferRequest SeqRequest(string id, int length, Random random, bool withMask)
    {
        var values = new float[length * 4];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (float)((random.NextDouble() * 4) - 2);
        }

        var inputs = ImmutableArray.CreateBuilder<NamedTensor>();
        inputs.Add(new NamedTensor("tokens", Tensors.Floats([1, length, 4], values)));
        if (withMask)
        {
            inputs.Add(new NamedTensor("mask", Longs([1, length], [.. Enumerable.Repeat(1L, length)])));
        }

        return new InferRequest(id, "seq", inputs.ToImmutable(), null, null, "nowhere");
    }

    private static InferRequest MultiRequest(string id, int rows, bool batched, int seed)
    {
        var random = new Random(seed);
        long[] Shape(long width) => batched ? [rows, width] : [width];
        var f16 = new byte[rows * 2 * 2];
        for (var i = 0; i < rows * 2; i++)
        {
            BitConverter.TryWriteBytes(f16.AsSpan(i * 2), (Half)random.Next(-8, 8));
        }

        var i32 = new byte[rows * 2 * 4];
        Buffer.BlockCopy(Enumerable.Range(0, rows * 2).Select(_ => random.Next(-100, 100)).ToArray(), 0, i32, 0, i32.Length);
        return new InferRequest(id, "multi",
        [
            new NamedTensor("f32", Tensors.Floats(Shape(3), [.. Enumerable.Range(0, rows * 3).Select(_ => (float)random.NextDouble())])),
            new NamedTensor("f16", new Tensor(TensorElementType.Float16, [.. Shape(2)], f16, [])),
            new NamedTensor("i64", Longs(Shape(2), [.. Enumerable.Range(0, rows * 2).Select(_ => (long)random.Next(-1000, 1000))])),
            new NamedTensor("i32", new Tensor(TensorElementType.Int32, [.. Shape(2)], i32, [])),
            new NamedTensor("flag", new Tensor(TensorElementType.Bool, [.. Shape(2)], Enumerable.Range(0, rows * 2).Select(_ => (byte)random.Next(2)).ToArray(), [])),
            new NamedTensor("text", new Tensor(TensorElementType.String, [.. Shape(1)], ReadOnlyMemory<byte>.Empty, [.. Enumerable.Range(0, rows).Select(r => $"{id}-row{r}-é")])),
        ], null, null, "nowhere");
    }

    private static InferRequest Ids(string id, long value)
        => new(id, "lookup", [new NamedTensor("ids", Longs([1, 1], value))], null, null, "nowhere");

    private static Tensor Longs(long[] shape, params long[] values)
    {
        var data = new byte[values.Length * 8];
        Buffer.BlockCopy(values, 0, data, 0, data.Length);
        return new Tensor(TensorElementType.Int64, [.. shape], data, []);
    }

    private static Tensor Input(InferRequest request, string name) => request.Inputs.Single(i => i.Name == name).Tensor;

    private static Tensor Output(ItemOutcome outcome, string name)
    {
        Assert.Null(outcome.Error);
        return outcome.Outputs.Single(o => o.Name == name).Tensor;
    }

    private static float[] Floats(Tensor tensor)
    {
        var values = new float[tensor.Data.Length / 4];
        tensor.Data.Span.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    private static long[] Longs(Tensor tensor)
    {
        var values = new long[tensor.Data.Length / 8];
        tensor.Data.Span.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    private static void AssertSameOutputs(ItemOutcome expected, ItemOutcome actual)
    {
        Assert.Null(expected.Error);
        Assert.Null(actual.Error);
        Assert.Equal(expected.Outputs.Select(o => o.Name), actual.Outputs.Select(o => o.Name));
        foreach (var (e, a) in expected.Outputs.Zip(actual.Outputs))
        {
            Assert.Equal(e.Tensor.Shape.ToArray(), a.Tensor.Shape.ToArray());
            var ev = Floats(e.Tensor);
            var av = Floats(a.Tensor);
            Assert.Equal(ev.Length, av.Length);
            for (var i = 0; i < ev.Length; i++)
            {
                Assert.True(Math.Abs(ev[i] - av[i]) <= Tolerance, $"{e.Name}[{i}]: alone {ev[i]}, batched {av[i]}");
            }
        }
    }
}
