using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Grpc.Core;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.Grpc.GrpcTestTensors;

namespace StreamInfer.Tests.Frontend.Auth;

/// <summary>A key names one client: its connections and calls share one session (bucket and backlog), and its priority
/// ceiling, models and connection cap hold on every endpoint.</summary>
[Collection(KeyedFrontendCollection.Name)]
public sealed class KeyLimitTests(KeyedFrontendFixture fixture)
{
    [Fact]
    public async Task TwoConnectionsOneKey_SecondRateLimitedByFirstsUse()
    {
        // Burst 2, a token every 100 s: the first connection spends the key's bucket.
        await using var first = await fixture.ConnectAsync(KeyedFrontendFixture.Slow);
        await first.SendInferAsync("a1");
        await first.SendInferAsync("a2");
        Assert.All(await first.NextAsync(2), f => Assert.Equal("result", f.GetProperty("type").GetString()));

        await using var second = await fixture.ConnectAsync(KeyedFrontendFixture.Slow);
        await second.SendInferAsync("a1");
        var refused = await second.NextAsync();

        Assert.Equal("error", refused.GetProperty("type").GetString());
        Assert.Equal("rate_limited", refused.GetProperty("code").GetString());
        Assert.Equal("a1", refused.GetProperty("id").GetString());

        // And the key's HTTP calls are the same client.
        using var http = fixture.Http(KeyedFrontendFixture.Slow);
        using var response = await http.PostAsJsonAsync("/predict", new { model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 1 } } } });
        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
    }

    [Fact]
    public async Task OneKeyConnectionCloses_OtherConnectionsRequestsGoOn()
    {
        await using var staying = await fixture.ConnectAsync(KeyedFrontendFixture.Open);
        var leaving = await fixture.ConnectAsync(KeyedFrontendFixture.Open);
        await leaving.SendInferAsync("x1");
        await leaving.NextAsync();
        await leaving.CloseAsync();
        await leaving.DisposeAsync();

        // Same request id on the other connection: ids are the connection's, not the key's.
        await staying.SendInferAsync("x1");
        var frame = await staying.NextAsync();

        Assert.Equal("result", frame.GetProperty("type").GetString());
    }

    [Fact]
    public async Task PriorityAboveKeysCeiling_LoweredToIt()
    {
        // echo has one priority level: priority 3 is out of its range unless the key's ceiling (0) lowers it.
        var body = new { model = "echo", priority = 3, inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 1 } } } };
        using var low = fixture.Http(KeyedFrontendFixture.Low);
        using var open = fixture.Http(KeyedFrontendFixture.Open);

        using var lowered = await low.PostAsJsonAsync("/predict", body);
        using var asked = await open.PostAsJsonAsync("/predict", body);

        Assert.Equal(HttpStatusCode.OK, lowered.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, asked.StatusCode);
        Assert.Equal("invalid_input", (await asked.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task ModelNotInKeysList_UnknownModelNamingOnlyTheKeysModels()
    {
        using var http = fixture.Http(KeyedFrontendFixture.EchoOnly);
        using var refused = await http.PostAsJsonAsync("/v1/completions", new { model = "tiny-lm", prompt = "Hi", max_tokens = 2 });
        using var served = await http.PostAsJsonAsync("/predict", new { model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 1 } } } });

        Assert.Equal(HttpStatusCode.NotFound, refused.StatusCode);
        var error = (await refused.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error");
        Assert.Equal("unknown_model", error.GetProperty("code").GetString());
        Assert.Equal("no model named 'tiny-lm' is served (served to this key: echo).", error.GetProperty("message").GetString());
        Assert.Equal(HttpStatusCode.OK, served.StatusCode);

        // Nor do metadata and the model list tell of it.
        using var metadata = await http.GetAsync("/v2/models/tiny-lm");
        Assert.Equal(HttpStatusCode.NotFound, metadata.StatusCode);
        var models = await http.GetFromJsonAsync<JsonElement>("/v1/models");
        Assert.Empty(models.GetProperty("data").EnumerateArray());
        using var open = fixture.Http(KeyedFrontendFixture.Open);
        Assert.Contains((await open.GetFromJsonAsync<JsonElement>("/v1/models")).GetProperty("data").EnumerateArray(), m => m.GetProperty("id").GetString() == "tiny-lm");

        // A model that does not exist at all is answered the same way: the key learns no other model's name.
        await using var ws = await fixture.ConnectAsync(KeyedFrontendFixture.EchoOnly);
        await ws.SendInferAsync("m1", model: "no-such");
        var frame = await ws.NextAsync();
        Assert.Equal("unknown_model", frame.GetProperty("code").GetString());
        Assert.DoesNotContain("tiny-lm", frame.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConnectionsPastKeysCap_RefusedUntilOneCloses()
    {
        var first = await fixture.ConnectAsync(KeyedFrontendFixture.OneAtATime);

        var status = await fixture.RefusedUpgradeAsync(o => o.SetRequestHeader("Authorization", $"Bearer {KeyedFrontendFixture.OneAtATime}"));
        Assert.Equal(HttpStatusCode.TooManyRequests, status);

        // A gRPC stream counts as a connection too.
        using (var channel = Channel(fixture.GrpcUri))
        {
            using var call = new GRPCInferenceService.GRPCInferenceServiceClient(channel).ModelStreamInfer(KeyedEndpointTests.Headers(KeyedFrontendFixture.OneAtATime));
            var failure = await FailureAsync(() => call.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal((StatusCode.ResourceExhausted, "rate_limited"), (failure.Status, failure.Code));
        }

        await first.CloseAsync();
        await first.DisposeAsync();
        await using var next = await Eventually.UntilAsync<WsTestClient?>(
            async () =>
            {
                try
                {
                    return await fixture.ConnectAsync(KeyedFrontendFixture.OneAtATime);
                }
                catch (System.Net.WebSockets.WebSocketException)
                {
                    return null;
                }
            },
            ws => ws is not null,
            what: "the key's connection slot is free again");
        await next!.SendInferAsync("n1");
        Assert.Equal("result", (await next.NextAsync()).GetProperty("type").GetString());
    }
}
