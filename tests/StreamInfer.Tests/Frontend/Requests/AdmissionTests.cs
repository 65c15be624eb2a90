using StreamInfer.Tests.Frontend.WebSockets;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Requests;

[Collection(FrontendCollection.Name)]
public sealed class AdmissionTests(FrontendFixture fixture)
{
    [Fact]
    public async Task Infer_ExpectedWaitExceedsDeadline_OverloadedAtOnceWithRetryAfter()
    {
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);
        // "slow-admit" takes 300 ms per request: one run teaches the batcher its batch time.
        await client.SendInferAsync("first", "slow-admit");
        Assert.Equal("result", (await client.NextAsync()).GetProperty("type").GetString());

        await client.SendInferAsync("busy", "slow-admit");
        await Eventually.UntilAsync(() => fixture.Batcher("slow-admit").GetStatusAsync(), s => s.Running == 1, what: "a request occupies the device");
        // Behind the running one, a request needs about 600 ms: 100 ms cannot be met, 10 s can.
        await client.SendInferAsync("hopeless", "slow-admit", timeoutMs: 100);
        var refused = await client.NextAsync();
        WebSocketBadInputTests.AssertError(refused, "overloaded", "hopeless");
        var retry = refused.GetProperty("retry_after_ms").GetInt32();
        Assert.InRange(retry, 100, 5000);

        await client.SendInferAsync("patient", "slow-admit", timeoutMs: 10_000);
        var ends = await client.NextAsync(2);
        Assert.All(ends, f => Assert.Equal("result", f.GetProperty("type").GetString()));
        Assert.Equal(["busy", "patient"], ends.Select(f => f.GetProperty("id").GetString()).Order());
    }
}
