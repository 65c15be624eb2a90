using StreamInfer.Grains.Models;

namespace StreamInfer.Tests.Grains.Models;

public sealed class WarmupPolicyTests
{
    [Theory]
    [InlineData(32, new[] { 1, 2, 4, 8, 16, 32 })]
    [InlineData(12, new[] { 1, 2, 4, 8, 12 })]
    [InlineData(1, new[] { 1 })]
    public void PowersOfTwoUpTo_LargestBatch_PowersBelowItThenItself(int maxBatchSize, int[] expected)
        => Assert.Equal(expected, WarmupPolicy.PowersOfTwoUpTo(maxBatchSize));
}
