using StreamInfer.Grains.Models;

namespace StreamInfer.Tests.Grains.Models;

public sealed class ModelKindTests
{
    [Theory]
    [InlineData("echo", ModelKind.Echo)]
    [InlineData("tensor", ModelKind.Tensor)]
    [InlineData("decoder", ModelKind.Decoder)]
    public void TryParse_ConfigName_RoundTripsThroughTheWireName(string wire, ModelKind expected)
    {
        Assert.True(ModelKinds.TryParse(wire, out var kind));
        Assert.Equal(expected, kind);
        Assert.Equal(wire, kind.ToWire());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("Tensor")]
    [InlineData("classifier")]
    public void TryParse_AnythingElse_IsUnknownShownAsQuestionMark(string? wire)
    {
        Assert.False(ModelKinds.TryParse(wire, out var kind));
        Assert.Equal(ModelKind.Unknown, kind);
        Assert.Equal("?", kind.ToWire());
    }
}
