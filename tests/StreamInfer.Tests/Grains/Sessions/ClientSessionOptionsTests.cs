using StreamInfer.Grains.Options;

namespace StreamInfer.Tests.Grains.Sessions;

public sealed class ClientSessionOptionsTests
{
    [Fact]
    public void Validate_Defaults_Succeed()
        => Assert.True(new ClientSessionOptionsValidator().Validate(null, new ClientSessionOptions()).Succeeded);

    [Theory]
    [InlineData(0)]
    [InlineData(100_001)]
    public void Validate_MaxSequencesOutOfRange_FailsNamingIt(int maxSequences)
    {
        var result = new ClientSessionOptionsValidator().Validate(null, new ClientSessionOptions { MaxSequences = maxSequences });

        Assert.True(result.Failed);
        Assert.Contains("StreamInfer:Session:MaxSequences", result.FailureMessage, StringComparison.Ordinal);
    }
}
