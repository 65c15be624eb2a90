using System.Text.Json;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Tests.Frontend.Protocol;

/// <summary>A tensor's <c>data</c> against its <c>shape</c>: flat or nested exactly as the shape, never ragged, and a
/// zero dimension that empties the tensor without excusing the others.</summary>
public sealed class TensorParserTests
{
    [Theory]
    [InlineData("[[1,2,3],[4]]")]
    [InlineData("[[1,2],[3]]")]
    [InlineData("[[1,2],3,4]")]
    [InlineData("[[1,2,3,4]]")]
    [InlineData("[[[1],[2]],[[3],[4]]]")]
    [InlineData("[[1,2],[3,[4]]]")]
    public void ParseTensor_NestedDataNotFollowingTheShape_RefusedNamingTheInput(string data)
    {
        var (tensor, error) = Parse("""{"dtype": "int64", "shape": [2, 2], "data": DATA}""".Replace("DATA", data, StringComparison.Ordinal));

        Assert.Null(tensor);
        Assert.NotNull(error);
        Assert.StartsWith("input 'x':", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("[[1,2],[3,4]]")]
    [InlineData("[1,2,3,4]")]
    public void ParseTensor_FlatOrNestedAsTheShape_Accepted(string data)
    {
        var (tensor, error) = Parse("""{"dtype": "int64", "shape": [2, 2], "data": DATA}""".Replace("DATA", data, StringComparison.Ordinal));

        Assert.Null(error);
        Assert.Equal([2L, 2], tensor!.Shape.ToArray());
        Assert.Equal(32, tensor.Data.Length);
    }

    [Fact]
    public void ParseTensor_ZeroDimension_EmptyTensorAccepted()
    {
        var (tensor, error) = Parse("""{"dtype": "float32", "shape": [2, 0], "data": [[], []]}""");

        Assert.Null(error);
        Assert.Equal(0, tensor!.Data.Length);
        Assert.Equal([2L, 0], tensor.Shape.ToArray());
    }

    [Theory]
    [InlineData("[4294967296, 4294967296, 0]")]
    [InlineData("[0, 4294967296, 4294967296]")]
    [InlineData("[3037000500, 0, 3037000500]")]
    public void ParseTensor_ZeroDimensionBesideHugeOnes_RefusedNotReadAsEmpty(string shape)
    {
        var (tensor, error) = Parse("""{"dtype": "float32", "shape": SHAPE, "data": []}""".Replace("SHAPE", shape, StringComparison.Ordinal));

        Assert.Null(tensor);
        Assert.Contains("fits in memory", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ParseTensor_NegativeDimension_Refused()
    {
        var (tensor, error) = Parse("""{"dtype": "float32", "shape": [2, -1], "data": [1, 2]}""");

        Assert.Null(tensor);
        Assert.Contains("non-negative integers", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ElementCount_ZeroDimensionAfterAnOverflow_StillNull()
    {
        Assert.Null(TensorTypes.ElementCount([1L << 32, 1L << 32, 0]));
        Assert.Equal(0, TensorTypes.ElementCount([5, 0, 7]));
        Assert.Equal(35, TensorTypes.ElementCount([5, 7]));
    }

    private static (Tensor? Tensor, string? Error) Parse(string json)
    {
        using var document = JsonDocument.Parse(json);
        return TensorParser.ParseTensor("x", document.RootElement.Clone());
    }
}
