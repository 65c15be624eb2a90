using System.Text;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>Each bad input gets a structured error with its protocol code, and the connection keeps serving.</summary>
[Collection(FrontendCollection.Name)]
public sealed class WebSocketBadInputTests(FrontendFixture fixture)
{
    [Theory]
    [InlineData("{not json", "bad_request", null)]
    [InlineData("[1,2,3]", "bad_request", null)]
    [InlineData("\"infer\"", "bad_request", null)]
    [InlineData("{\"id\":\"m1\",\"model\":\"echo\"}", "bad_request", "m1")]
    [InlineData("{\"type\":\"infer\",\"model\":\"echo\"}", "bad_request", null)]
    [InlineData("{\"type\":\"infer\",\"id\":\"m3\"}", "bad_request", "m3")]
    [InlineData("{\"type\":\"launch\",\"id\":\"m4\"}", "bad_request", "m4")]
    [InlineData("{\"type\":\"infer\",\"id\":\"m5\",\"model\":\"no-such-model\",\"inputs\":{}}", "unknown_model", "m5")]
    [InlineData("{\"type\":\"infer\",\"id\":\"m6\",\"model\":\"echo\",\"inputs\":{\"x\":{\"dtype\":\"float32\",\"shape\":[2,2],\"data\":[1,2,3]}}}", "invalid_input", "m6")]
    [InlineData("{\"type\":\"infer\",\"id\":\"m7\",\"model\":\"echo\",\"inputs\":{\"x\":{\"dtype\":\"float32\",\"shape\":[2],\"data\":[1,\"two\"]}}}", "invalid_input", "m7")]
    [InlineData("{\"type\":\"infer\",\"id\":\"m8\",\"model\":\"echo\",\"inputs\":{\"x\":{\"dtype\":\"complex64\",\"shape\":[1],\"data\":[1]}}}", "invalid_input", "m8")]
    [InlineData("{\"type\":\"infer\",\"id\":\"m9\",\"model\":\"typed\",\"inputs\":{\"x\":{\"dtype\":\"float32\",\"shape\":[1,4],\"data\":[1,2,3,4]}}}", "invalid_input", "m9")]
    [InlineData("{\"type\":\"infer\",\"id\":\"m10\",\"model\":\"typed\",\"inputs\":{\"x\":{\"dtype\":\"int64\",\"shape\":[2,2],\"data\":[1,2,3,4]}}}", "invalid_input", "m10")]
    [InlineData("{\"type\":\"cancel\",\"id\":\"never-sent\"}", "bad_request", "never-sent")]
    [InlineData("{\"type\":\"infer\",\"id\":\"\\ud800\",\"model\":\"echo\"}", "bad_request", null)]
    [InlineData("{\"type\":\"infer\",\"id\":\"m11\",\"model\":\"echo\",\"inputs\":{\"x\":{\"dtype\":\"float64\",\"shape\":[1],\"data\":[1e400]}}}", "invalid_input", "m11")]
    [InlineData("{\"type\":\"infer\",\"id\":\"m12\",\"model\":\"echo\",\"timeout_ms\":0.00001,\"inputs\":{\"x\":{\"dtype\":\"int32\",\"shape\":[1],\"data\":[1]}}}", "bad_request", "m12")]
    [InlineData("{\"type\":\"infer\",\"id\":\"m13\",\"model\":\"echo\",\"inputs\":{\"x\":{\"dtype\":\"int32\",\"shape\":[1],\"data\":[1]},\"x\":{\"dtype\":\"int32\",\"shape\":[1],\"data\":[2]}}}", "invalid_input", "m13")]
    public async Task Frame_Bad_StructuredErrorAndConnectionKeepsServing(string frame, string code, string? id)
    {
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);

        await client.SendAsync(frame);

        var error = await client.NextAsync();
        AssertError(error, code, id);
        if (code == "invalid_input")
        {
            Assert.Contains("'x'", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        await AssertStillServesAsync(client);
    }

    [Fact]
    public async Task Frame_LargerThanLimit_PayloadTooLargeAndConnectionKeepsServing()
    {
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);
        var data = string.Join(',', Enumerable.Repeat("1.0", FrontendFixture.MaxFrameBytes / 4));
        var frame = $"{{\"type\":\"infer\",\"id\":\"big\",\"model\":\"echo\",\"inputs\":{{\"x\":{{\"dtype\":\"float32\",\"shape\":[{FrontendFixture.MaxFrameBytes / 4}],\"data\":[{data}]}}}}}}";
        Assert.True(Encoding.UTF8.GetByteCount(frame) > FrontendFixture.MaxFrameBytes);

        await client.SendAsync(frame);

        AssertError(await client.NextAsync(), "payload_too_large", null);
        await AssertStillServesAsync(client);
    }

    [Fact]
    public async Task Infer_DuplicateInFlightId_BadRequestAndFirstStillAnswered()
    {
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);
        await client.SendInferAsync("same", "hold");

        await client.SendInferAsync("same", "echo");

        var error = await client.NextAsync();
        AssertError(error, "bad_request", "same");
        Assert.Contains("already in flight", error.GetProperty("message").GetString(), StringComparison.Ordinal);

        // The first is still in flight and still cancellable: it ends exactly once, as cancelled.
        await client.SendAsync(new { type = "cancel", id = "same" });
        AssertError(await client.NextAsync(), "cancelled", "same");
        await AssertStillServesAsync(client);
    }

    [Fact]
    public async Task BadInput_FromOneClient_OtherClientsUnaffected()
    {
        await using var bad = await WsTestClient.ConnectAsync(fixture.WsUri);
        await using var good = await WsTestClient.ConnectAsync(fixture.WsUri);

        for (var i = 0; i < 20; i++)
        {
            await bad.SendAsync("{garbage");
            await good.SendInferAsync($"g{i}");
        }

        var goodFrames = await good.NextAsync(20);
        Assert.All(goodFrames, f => Assert.Equal("result", f.GetProperty("type").GetString()));
        var badFrames = await bad.NextAsync(20);
        Assert.All(badFrames, f => AssertError(f, "bad_request", null));
    }

    internal static void AssertError(JsonElement frame, string code, string? id)
    {
        Assert.Equal("error", frame.GetProperty("type").GetString());
        Assert.Equal(code, frame.GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(frame.GetProperty("message").GetString()));
        if (id is null)
        {
            Assert.False(frame.TryGetProperty("id", out _), $"unexpected id in {frame}");
        }
        else
        {
            Assert.Equal(id, frame.GetProperty("id").GetString());
        }
    }

    internal static async Task AssertStillServesAsync(WsTestClient client)
    {
        var id = $"ok-{Guid.NewGuid():N}";
        await client.SendInferAsync(id);
        var result = await client.NextAsync();
        Assert.Equal("result", result.GetProperty("type").GetString());
        Assert.Equal(id, result.GetProperty("id").GetString());
        Assert.Equal([1.5, 2.5], result.GetProperty("outputs").GetProperty("x").GetProperty("data").EnumerateArray().Select(e => e.GetDouble()));
    }
}
