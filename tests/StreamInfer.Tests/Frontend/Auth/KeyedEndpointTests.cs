using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Grpc.Core;
using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Tests.Frontend.Grpc;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.Grpc.GrpcTestTensors;

namespace StreamInfer.Tests.Frontend.Auth;

/// <summary>With keys configured, every serving endpoint refuses a request without a key or with a wrong one before
/// reading it, and serves one with a right key; health and metrics stay open.</summary>
[Collection(KeyedFrontendCollection.Name)]
public sealed class KeyedEndpointTests(KeyedFrontendFixture fixture)
{
    private const string WrongKey = "not-a-configured-key";

    public static TheoryData<string?> BadKeys => new() { null, WrongKey };

    private static object EchoBody => new { model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { 1, 2 }, data = new[] { 1.5, 2.5 } } } };

    [Theory]
    [MemberData(nameof(BadKeys))]
    public async Task Predict_WithoutRightKey_Unauthorized401(string? key)
    {
        using var http = fixture.Http(key);
        using var response = await http.PostAsJsonAsync("/predict", EchoBody);

        await AssertUnauthorizedAsync(response);
    }

    [Fact]
    public async Task Predict_BodyNotEvenJsonWithoutKey_UnauthorizedNotBadRequest()
    {
        using var http = fixture.Http(null);
        using var response = await http.PostAsync("/predict", new StringContent("{ not json"));

        await AssertUnauthorizedAsync(response);
    }

    [Fact]
    public async Task Predict_RightKey_Served()
    {
        using var http = fixture.Http(KeyedFrontendFixture.Open);
        using var response = await http.PostAsJsonAsync("/predict", EchoBody);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("echo", body.GetProperty("model").GetString());
    }

    [Theory]
    [MemberData(nameof(BadKeys))]
    public async Task KServeInferAndMetadata_WithoutRightKey_Unauthorized401(string? key)
    {
        using var http = fixture.Http(key);
        using var infer = await http.PostAsJsonAsync("/v2/models/echo/infer", KServeEcho);
        await AssertUnauthorizedAsync(infer);
        using var metadata = await http.GetAsync("/v2/models/echo");
        await AssertUnauthorizedAsync(metadata);
    }

    [Fact]
    public async Task KServeInfer_RightKey_Served()
    {
        using var http = fixture.Http(KeyedFrontendFixture.Open);
        using var response = await http.PostAsJsonAsync("/v2/models/echo/infer", KServeEcho);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal([1.5, 2.5], body.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(e => e.GetDouble()));
    }

    [Theory]
    [MemberData(nameof(BadKeys))]
    public async Task OpenAI_WithoutRightKey_Unauthorized401InOpenAIShape(string? key)
    {
        using var http = fixture.Http(key);
        foreach (var stream in new[] { false, true })
        {
            using var response = await http.PostAsJsonAsync("/v1/completions", new { model = "tiny-lm", prompt = "Hi", max_tokens = 2, stream });

            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("Bearer", Assert.Single(response.Headers.WwwAuthenticate).Scheme);
            var error = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error");
            Assert.Equal("unauthorized", error.GetProperty("code").GetString());
            Assert.Equal("authentication_error", error.GetProperty("type").GetString());
        }

        using var models = await http.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);
    }

    [Fact]
    public async Task OpenAIStreaming_RightKey_StreamsEvents()
    {
        using var http = fixture.Http(KeyedFrontendFixture.Open);
        using var response = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "tiny-lm", messages = new[] { new { role = "user", content = "Hi" } }, max_tokens = 3, temperature = 0, stream = true });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("data: [DONE]", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WebSocket_WithoutKeyOrWrongKey_UpgradeRefused401()
    {
        Assert.Equal(HttpStatusCode.Unauthorized, await fixture.RefusedUpgradeAsync(_ => { }));
        Assert.Equal(HttpStatusCode.Unauthorized, await fixture.RefusedUpgradeAsync(o => o.SetRequestHeader("Authorization", $"Bearer {WrongKey}")));
        Assert.Equal(HttpStatusCode.Unauthorized, await fixture.RefusedUpgradeAsync(o =>
        {
            o.AddSubProtocol(ClientAuth.Subprotocol);
            o.AddSubProtocol(ClientAuth.BearerSubprotocol + WrongKey);
        }));
    }

    [Fact]
    public async Task WebSocket_KeyInHeader_Served()
    {
        await using var ws = await fixture.ConnectAsync(KeyedFrontendFixture.Open);
        await ws.SendInferAsync("h1");

        var frame = await ws.NextAsync();

        Assert.Equal("result", frame.GetProperty("type").GetString());
    }

    [Fact]
    public async Task WebSocket_KeyAsSubprotocol_ServedAndOnlyTheRealSubprotocolSelected()
    {
        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri, o =>
        {
            o.AddSubProtocol(ClientAuth.Subprotocol);
            o.AddSubProtocol(ClientAuth.BearerSubprotocol + KeyedFrontendFixture.Open);
        });
        await ws.SendInferAsync("p1");

        var frame = await ws.NextAsync();

        Assert.Equal("result", frame.GetProperty("type").GetString());
        Assert.Equal(ClientAuth.Subprotocol, ws.SubProtocol);
    }

    [Theory]
    [MemberData(nameof(BadKeys))]
    public async Task GrpcInferAndStream_WithoutRightKey_Unauthenticated(string? key)
    {
        using var channel = Channel(fixture.GrpcUri);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var headers = Headers(key);

        var unary = await FailureAsync(() => client.ModelInferAsync(GrpcInferenceTests.RawF32Echo("u1"), headers).ResponseAsync);
        Assert.Equal((StatusCode.Unauthenticated, "unauthorized"), (unary.Status, unary.Code));

        // Refused before any message is read: the answer comes without one being sent.
        using var call = client.ModelStreamInfer(headers);
        var stream = await FailureAsync(() => call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.Unauthenticated, stream.Status);

        // Liveness and readiness stay open, as /healthz and /readyz do.
        Assert.True((await client.ServerLiveAsync(new ServerLiveRequest(), headers)).Live);
    }

    [Fact]
    public async Task GrpcInferAndStream_RightKey_Served()
    {
        using var channel = Channel(fixture.GrpcUri);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var headers = Headers(KeyedFrontendFixture.Open);

        Assert.Equal([1d, 2d, 3d], Values(await client.ModelInferAsync(GrpcInferenceTests.RawF32Echo("u1"), headers), "y"));

        using var call = client.ModelStreamInfer(headers, DateTime.UtcNow.AddSeconds(30));
        await call.RequestStream.WriteAsync(GrpcInferenceTests.RawF32Echo("s1"));
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(string.Empty, call.ResponseStream.Current.ErrorMessage);
        Assert.Equal("s1", call.ResponseStream.Current.InferResponse.Id);
    }

    [Fact]
    public async Task HealthAndMetrics_WithoutKey_StayOpen()
    {
        using var http = fixture.Http(null);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/metrics")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/v2/health/live")).StatusCode);
    }

    internal static Metadata? Headers(string? key) => key is null ? null : new Metadata { { "authorization", $"Bearer {key}" } };

    private static object KServeEcho => new { inputs = new[] { new { name = "x", datatype = "FP32", shape = new[] { 2 }, data = new[] { 1.5, 2.5 } } } };

    private static async Task AssertUnauthorizedAsync(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("Bearer", Assert.Single(response.Headers.WwwAuthenticate).Scheme);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("unauthorized", body.GetProperty("error").GetProperty("code").GetString());
    }
}
