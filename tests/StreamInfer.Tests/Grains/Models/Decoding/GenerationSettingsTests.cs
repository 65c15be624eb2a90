using StreamInfer.Grains.Models.Decoding;

namespace StreamInfer.Tests.Grains.Models.Decoding;

public sealed class GenerationSettingsTests
{
    [Fact]
    public void Validate_AllNull_IsValid()
    {
        Assert.Null(GenerationSettings.Validate(null, null, null, null, null, 257));
    }

    [Fact]
    public void Validate_Boundaries_AreValid()
    {
        Assert.Null(GenerationSettings.Validate(0, 0, 1, 1, ["a", new string('x', 64), "c", "d"], 257));
        Assert.Null(GenerationSettings.Validate(2, 100_000, 1e-9, 4096, [], 257));
    }

    [Theory]
    [InlineData(-0.01, null, null, null, "temperature")]
    [InlineData(2.01, null, null, null, "temperature")]
    [InlineData(double.NaN, null, null, null, "temperature")]
    [InlineData(null, -1, null, null, "top_k")]
    [InlineData(null, null, 0.0, null, "top_p")]
    [InlineData(null, null, 1.01, null, "top_p")]
    [InlineData(null, null, null, 0, "max_tokens")]
    public void Validate_OutOfRange_NamesTheField(double? temperature, int? topK, double? topP, int? maxTokens, string field)
    {
        var error = GenerationSettings.Validate(temperature, topK, topP, maxTokens, null, 257);

        Assert.NotNull(error);
        Assert.Contains(field, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_BadStops_NamesTheProblem()
    {
        Assert.Contains("at most 4", GenerationSettings.Validate(null, null, null, null, ["a", "b", "c", "d", "e"], 257), StringComparison.Ordinal);
        Assert.Contains("stop[1]", GenerationSettings.Validate(null, null, null, null, ["a", ""], 257), StringComparison.Ordinal);
        Assert.Contains("stop[0]", GenerationSettings.Validate(null, null, null, null, [new string('x', 65)], 257), StringComparison.Ordinal);
    }
}
