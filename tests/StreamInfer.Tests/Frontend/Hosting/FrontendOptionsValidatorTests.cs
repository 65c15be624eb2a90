using StreamInfer.Frontend.Hosting;

namespace StreamInfer.Tests.Frontend.Hosting;

/// <summary>The WebSocket budget's bounds: the byte budget holds the largest message allowed, and a message's deadline.</summary>
public sealed class FrontendOptionsValidatorTests
{
    [Fact]
    public void Validate_ByteBudgetBelowTheLargestMessage_FailsNamingIt()
    {
        var result = new FrontendOptionsValidator().Validate(null, new FrontendOptions { MaxBinaryBytes = 2 << 20, MaxBytesPerSecond = 1 << 20 });

        Assert.True(result.Failed);
        Assert.Contains("MaxBytesPerSecond must be in [max(MaxFrameBytes, MaxBinaryBytes) (2097152)", result.FailureMessage, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_Defaults_Succeed_AndAMessageTimeoutPastAnHourFails()
    {
        Assert.True(new FrontendOptionsValidator().Validate(null, new FrontendOptions()).Succeeded);

        var result = new FrontendOptionsValidator().Validate(null, new FrontendOptions { MessageReceiveTimeout = TimeSpan.FromHours(2) });
        Assert.True(result.Failed);
        Assert.Contains("MessageReceiveTimeout must be in [0, 1 h]", result.FailureMessage, StringComparison.Ordinal);
    }
}
