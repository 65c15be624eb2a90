using System.Collections.Immutable;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models;

public sealed class EchoModelTests
{
    [Fact]
    public void Check_PayloadPastMaxRequestBytes_PayloadTooLargeNamingTheLimit()
    {
        var echo = new EchoModel("echo", new ModelOptions { MaxRequestBytes = 20 });
        var strings = new Tensor(TensorElementType.String, [2], ReadOnlyMemory<byte>.Empty, ["abc", "défg"]);

        var floats = echo.Check(Request(new NamedTensor("x", Tensors.Floats([6], new float[6]))));
        // Each string counts its UTF-8 bytes and a 4-byte length: 7 + 9 = 16.
        var fits = echo.Check(Request(new NamedTensor("s", strings)));

        Assert.Equal(ErrorCode.PayloadTooLarge, floats.Error?.Code);
        Assert.Contains("24 bytes", floats.Error!.Message, StringComparison.Ordinal);
        Assert.Contains("at most 20", floats.Error.Message, StringComparison.Ordinal);
        Assert.Null(fits.Error);
        Assert.Null(new EchoModel("echo", new ModelOptions()).Check(Request(new NamedTensor("x", Tensors.Floats([6], new float[6])))).Error);
    }

    [Theory]
    [InlineData(4294967296L, 4294967296L)]
    [InlineData(9223372036854775807L, 2L)]
    [InlineData(65536L, 65536L)]
    public void Check_ShapeWhoseProductOverflows_InvalidInputNamingTheBound(long a, long b)
    {
        // Multiplied in 64 bits without a check, the first shape's count wraps to 0 and matches the empty data.
        var tensor = new Tensor(TensorElementType.UInt8, [a, b], ReadOnlyMemory<byte>.Empty, []);

        var check = new EchoModel("echo", new ModelOptions()).Check(Request(new NamedTensor("x", tensor)));

        Assert.Null(tensor.ElementCount);
        Assert.Equal(ErrorCode.InvalidInput, check.Error?.Code);
        Assert.Contains($"at most {TensorTypes.MaxElements} elements", check.Error!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_MaxRequestBytesBelowOne_Fails()
    {
        var options = new ModelsOptions { Models = { ["echo"] = new ModelOptions { MaxRequestBytes = 0 } } };

        var result = new ModelsOptionsValidator().Validate(null, options);

        Assert.True(result.Failed);
        Assert.Contains("StreamInfer:Models:echo:MaxRequestBytes", result.FailureMessage, StringComparison.Ordinal);
    }

    private static InferRequest Request(params NamedTensor[] inputs) => new("r", "echo", ImmutableArray.Create(inputs), null, null, "nowhere");
}
