using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Http;

/// <summary>
/// A grid of its own whose repository holds a model with non-finite outputs, a model whose file is broken, one whose
/// config is out of range, and a good one.
/// </summary>
public sealed class ErrorAnswersFixture : IAsyncLifetime
{
    public WebApplication App { get; private set; } = null!;

    public HttpClient Http { get; private set; } = null!;

    public Uri WsUri { get; private set; } = null!;

    public string Repository { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var settings = FrontendFixture.IsolatedSettings();
        Repository = settings["StreamInfer:Repository:Path"]!;
        Directory.CreateDirectory(Repository);
        TestModels.WriteNonFinite(Repository);
        TestModels.WriteSequence(Repository, "good");
        TestModels.WriteSequence(Repository, "broken");
        File.WriteAllText(Path.Combine(Repository, "broken", "1", "model.onnx"), "this is not a protobuf");
        TestModels.WriteSequence(Repository, "bad-field", extraConfig: """, "warmup_dims": {"seq": 1000000000}""");
        Uri http;
        (App, http) = await FrontendFixture.StartGridAsync(settings);
        Http = new HttpClient { BaseAddress = http, Timeout = TimeSpan.FromSeconds(30) };
        WsUri = new UriBuilder(http) { Scheme = "ws", Path = "/ws" }.Uri;
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

/// <summary>
/// Every failure answers the protocol's structured error, and what a client is told names no absolute path and carries
/// no raw ONNX Runtime text; NaN and infinite outputs come back as the strings JSON can carry.
/// </summary>
public sealed class ErrorAnswersTests(ErrorAnswersFixture fixture) : IClassFixture<ErrorAnswersFixture>
{
    [Fact]
    public async Task KServeInfer_NonFiniteOutputs_200WithNaNAndInfinitiesAsStrings()
    {
        using var response = await PostAsync("/v2/models/non-finite/infer", """{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [-1, 0]}]}""");
        var body = await ReadAsync(response);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var outputs = body.GetProperty("outputs").EnumerateArray().ToDictionary(o => o.GetProperty("name").GetString()!, o => o.GetProperty("data"));
        Assert.Equal(["NaN", "-Infinity"], outputs["log"].EnumerateArray().Select(v => v.GetString()));
        Assert.Equal(-1f, outputs["inverse"][0].GetSingle());
        Assert.Equal("Infinity", outputs["inverse"][1].GetString());
    }

    [Fact]
    public async Task Predict_NonFiniteOutputs_200WithNaNAndInfinitiesAsStrings()
    {
        using var response = await PostAsync("/predict", """{"model": "non-finite", "inputs": {"x": {"dtype": "float32", "shape": [1, 2], "data": [-1, 0]}}}""");
        var body = await ReadAsync(response);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var log = body.GetProperty("outputs").GetProperty("log").GetProperty("data");
        Assert.Equal(["NaN", "-Infinity"], log.EnumerateArray().Select(v => v.GetString()));
        Assert.Equal("Infinity", body.GetProperty("outputs").GetProperty("inverse").GetProperty("data")[1].GetString());
    }

    [Fact]
    public async Task WebSocket_NonFiniteOutputs_ResultWithNaNAndInfinitiesAsStrings()
    {
        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);
        await ws.SendInferAsync("nan-1", "non-finite", new { x = new { dtype = "float32", shape = new[] { 1, 2 }, data = new[] { -1.0, 0.0 } } });
        var frame = await ws.NextAsync();

        Assert.Equal("result", frame.GetProperty("type").GetString());
        var outputs = frame.GetProperty("outputs");
        Assert.Equal(["NaN", "-Infinity"], outputs.GetProperty("log").GetProperty("data").EnumerateArray().Select(v => v.GetString()));
        Assert.Equal("Infinity", outputs.GetProperty("inverse").GetProperty("data")[1].GetString());
    }

    [Fact]
    public async Task FailedModel_EveryPublicAnswer_NamesWhereButNoAbsolutePathOrRuntimeText()
    {
        using var metadata = await fixture.Http.GetAsync("/v2/models/broken");
        using var predict = await PostAsync("/predict", """{"model": "broken", "inputs": {"tokens": {"dtype": "float32", "shape": [1, 1, 4], "data": [1, 2, 3, 4]}}}""");
        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);
        await ws.SendInferAsync("broken-1", "broken");
        var frame = await ws.NextAsync();

        Assert.Equal(HttpStatusCode.ServiceUnavailable, metadata.StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, predict.StatusCode);
        var messages = new[]
        {
            (await ReadAsync(metadata)).GetProperty("error").GetString()!,
            (await ReadAsync(predict)).GetProperty("error").GetProperty("message").GetString()!,
            frame.GetProperty("message").GetString()!,
        };
        Assert.Equal("model_unavailable", frame.GetProperty("code").GetString());
        Assert.All(messages, m =>
        {
            Assert.Contains("'broken' failed to load", m, StringComparison.Ordinal);
            Assert.Contains("broken/1/model.onnx", m, StringComparison.Ordinal);
            Assert.DoesNotContain(fixture.Repository, m, StringComparison.Ordinal);
            Assert.DoesNotContain(Path.GetTempPath(), m, StringComparison.Ordinal);
            Assert.DoesNotContain("Protobuf", m, StringComparison.OrdinalIgnoreCase);
        });
    }

    [Fact]
    public async Task Readyz_ModelsThatFailed_ReadyWithThemListedAsFailed()
    {
        using var response = await fixture.Http.GetAsync("/readyz");
        var body = await ReadAsync(response);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(["bad-field", "broken"], body.GetProperty("failed").EnumerateArray().Select(f => f.GetString()).Order(StringComparer.Ordinal));
        using var good = await fixture.Http.GetAsync("/v2/models/good/ready");
        Assert.Equal(HttpStatusCode.OK, good.StatusCode);
    }

    [Theory]
    [InlineData("/predict", """{"model": "good", "inputs": {"tokens": {"dtype": "float32", "shape": [1, 2, 4], "data": [[[1, 2, 3, 4], [5, 6, 7]]]}}}""")]
    [InlineData("/predict", """{"model": "good", "inputs": {"tokens": {"dtype": "float32", "shape": [1, 2, 4], "data": [[1, 2, 3, 4, 5, 6, 7, 8]]}}}""")]
    [InlineData("/v2/models/good/infer", """{"inputs": [{"name": "tokens", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2, 3], [4]]}]}""")]
    [InlineData("/predict", """{"model": "good", "inputs": {"tokens": {"dtype": "float32", "shape": [4294967296, 4294967296, 0], "data": []}}}""")]
    [InlineData("/v2/models/good/infer", """{"inputs": [{"name": "tokens", "shape": [1, -2, 4], "datatype": "FP32", "data": []}]}""")]
    public async Task Infer_RaggedDataOrBadShape_400InvalidInput(string path, string body)
    {
        using var response = await PostAsync(path, body);
        var answer = await ReadAsync(response);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var code = answer.GetProperty(path == "/predict" ? "error" : "code");
        Assert.Equal("invalid_input", path == "/predict" ? code.GetProperty("code").GetString() : code.GetString());
    }

    private Task<HttpResponseMessage> PostAsync(string path, string json)
        => fixture.Http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));

    private static async Task<JsonElement> ReadAsync(HttpResponseMessage response)
        => JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
}
