using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Sessions;

/// <summary>
/// Which refusals cost the client a rate-limit token: its own bad input does, as a request does; a refusal that is the
/// grid's (a full queue) gives it back. The test cluster's clock stands still, so no token refills meanwhile.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class TokenChargeTests(ClusterFixture fixture)
{
    [Fact]
    public async Task Submit_UnknownModelOrInvalidInput_CostsATokenUntilRateLimited()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(ErrorCode.UnknownModel, (await session.SubmitAsync(probe.Request($"u{i}", "no-such-model"))).Error?.Code);
            Assert.Equal(ErrorCode.InvalidInput, (await session.SubmitAsync(probe.Request($"p{i}", "hold-rate") with { Priority = 99 })).Error?.Code);
        }

        Assert.Equal(ClusterFixture.Burst - 10, (await session.GetStatusAsync()).Tokens, precision: 6);
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(ErrorCode.UnknownModel, (await session.SubmitAsync(probe.Request($"v{i}", "no-such-model"))).Error?.Code);
        }

        // The bucket is empty: the next request, well-formed or not, is refused for the rate.
        Assert.Equal(ErrorCode.RateLimited, (await session.SubmitAsync(probe.Request("ok", "hold-rate"))).Error?.Code);
        Assert.Equal(ErrorCode.RateLimited, (await session.SubmitAsync(probe.Request("bad", "no-such-model"))).Error?.Code);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_RefusedOverloaded_TokenGivenBack()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        Assert.True((await session.SubmitAsync(probe.Request("held", "refund-queue"))).Accepted);

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(ErrorCode.Overloaded, (await session.SubmitAsync(probe.Request($"o{i}", "refund-queue"))).Error?.Code);
        }

        Assert.Equal(ClusterFixture.Burst - 1, (await session.GetStatusAsync()).Tokens, precision: 6);
        await session.CloseAsync();
    }
}
