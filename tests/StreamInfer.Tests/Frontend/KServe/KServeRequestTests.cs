using System.Runtime.InteropServices;
using System.Text;
using StreamInfer.Frontend.KServe;
using static StreamInfer.Tests.Frontend.KServe.BinaryTensorClient;

namespace StreamInfer.Tests.Frontend.KServe;

/// <summary>How a binary request's body becomes tensors: numeric inputs are the body's own bytes, not copies.</summary>
public sealed class KServeRequestTests
{
    [Fact]
    public void Parse_BinaryInputs_NumericTensorsAreSlicesOfTheBodyAtTheirOffsets()
    {
        var header = Encoding.UTF8.GetBytes("""
            {"inputs":[
              {"name":"a","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}},
              {"name":"j","datatype":"INT64","shape":[1],"data":[7]},
              {"name":"s","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":6}},
              {"name":"h","datatype":"FP16","shape":[2],"parameters":{"binary_data_size":4}}]}
            """);
        byte[] body = [.. header, .. Raw(1f, 2f), .. Raw("hi"), .. Raw((Half)0.5, (Half)(-3))];

        var (request, error) = KServeRequest.Parse(body, header.Length, "m");

        Assert.Null(error);
        Assert.True(request!.ReadsBody);
        var inputs = request.Infer.Inputs.ToDictionary(i => i.Name, i => i.Tensor);
        AssertSliceOf(body, header.Length, 8, inputs["a"].Data);
        AssertSliceOf(body, header.Length + 8 + 6, 4, inputs["h"].Data);
        Assert.Equal("hi", Assert.Single(inputs["s"].Strings));
        Assert.Equal(Raw(7L), inputs["j"].Data.ToArray());
        Assert.Equal(TensorElementType.Float16, inputs["h"].ElementType);
    }

    [Fact]
    public void Parse_JsonOnly_DoesNotReadTheBodyAfterParsing()
    {
        var body = Encoding.UTF8.GetBytes("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"parameters":{"binary_data_output":true}}""");

        var (request, error) = KServeRequest.Parse(body, null, "m");

        Assert.Null(error);
        Assert.False(request!.ReadsBody);
        Assert.True(request.Outputs.BinaryByDefault);
        Assert.Null(request.Outputs.Named);
    }

    [Theory]
    [InlineData(9223372036854775807L, 9223372036854775807L, 4611686018427387910L, "a")]
    [InlineData(4L, 9223372036854775807L, 1L, "b")]
    [InlineData(2L, 2L, 1L, "c")]
    public void Parse_BinaryDataSizesPastTheBodyOrWrappingAround_BadRequestNamingTheInput(long a, long b, long c, string named)
    {
        // The first row's sizes, summed in 64 bits, wrap around to exactly the 4 bytes that follow.
        var header = Encoding.UTF8.GetBytes($$$"""
            {"inputs":[
              {"name":"a","datatype":"UINT8","shape":[4],"parameters":{"binary_data_size":{{{a}}}}},
              {"name":"b","datatype":"UINT8","shape":[4],"parameters":{"binary_data_size":{{{b}}}}},
              {"name":"c","datatype":"UINT8","shape":[4],"parameters":{"binary_data_size":{{{c}}}}}]}
            """);
        byte[] body = [.. header, 1, 2, 3, 4];

        var (request, error) = KServeRequest.Parse(body, header.Length, "m");

        Assert.Null(request);
        Assert.Equal(ErrorCode.BadRequest, error!.Code);
        Assert.StartsWith($"input '{named}' has binary_data_size", error.Message, StringComparison.Ordinal);
    }

    private static void AssertSliceOf(byte[] body, int offset, int length, ReadOnlyMemory<byte> data)
    {
        Assert.True(MemoryMarshal.TryGetArray(data, out var segment));
        Assert.Same(body, segment.Array);
        Assert.Equal(offset, segment.Offset);
        Assert.Equal(length, segment.Count);
    }
}
