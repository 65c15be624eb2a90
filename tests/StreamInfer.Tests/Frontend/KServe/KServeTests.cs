using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.KServe;

/// <summary>
/// The KServe v2 / Open Inference Protocol endpoints over the real embedded grid, on the generated models of
/// <see cref="TestModels"/>; and the same tensor form on the WebSocket <c>infer</c> and <c>POST /predict</c>.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class KServeTests(FrontendFixture fixture)
{
    // The seq model's weights (see TestModels.WriteSequence): hidden = (tokens · W + b) · mask, pooled = Σ hidden / Σ mask.
    private static readonly float[,] W = { { 0.5f, -1f, 0.25f }, { 1.5f, 0.75f, -0.5f }, { -2f, 0.1f, 1f }, { 0.3f, -0.7f, 2f } };
    private static readonly float[] B = [0.1f, -0.2f, 0.3f];

    [Fact]
    public async Task Infer_EveryDatatypeOnMulti_RoundTripsNamesTypesShapesAndData()
    {
        using var response = await fixture.Http.PostAsJsonAsync("/v2/models/multi/infer", new
        {
            id = "k1",
            inputs = new object[]
            {
                new { name = "f32", datatype = "FP32", shape = new[] { 2, 3 }, data = new[] { 1f, -2f, 0.5f, 3f, 4f, -6f } },
                new { name = "f16", datatype = "FP16", shape = new[] { 2, 2 }, data = new[] { 1.5, -2.25, 0, 8 } },
                new { name = "i64", datatype = "INT64", shape = new[] { 2, 2 }, data = new[] { 9_000_000_000L, 1, -5, 2 } },
                new { name = "i32", datatype = "INT32", shape = new[] { 2, 2 }, data = new[] { 7, -8, 1_000_000, 0 } },
                new { name = "flag", datatype = "BOOL", shape = new[] { 2, 2 }, data = new[] { true, false, false, true } },
                new { name = "text", datatype = "BYTES", shape = new[] { 2, 1 }, data = new[] { "héllo \"you\"", "" } },
            },
        });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var root = body.RootElement;
        Assert.Equal("multi", root.GetProperty("model_name").GetString());
        Assert.Equal("1", root.GetProperty("model_version").GetString());
        Assert.Equal("k1", root.GetProperty("id").GetString());
        var timing = root.GetProperty("timing");
        Assert.True(timing.GetProperty("batch_size").GetInt32() >= 1);
        Assert.True(timing.GetProperty("compute_ms").GetDouble() >= 0);
        Assert.True(timing.GetProperty("queue_ms").GetDouble() >= 0);

        var outputs = root.GetProperty("outputs").EnumerateArray().ToDictionary(o => o.GetProperty("name").GetString()!);
        Assert.Equal(["f16_out", "f32_out", "flag_out", "i32_out", "i64_sum", "text_out"], outputs.Keys.Order());

        AssertTensor(outputs["f32_out"], "FP32", [2, 3]);
        Assert.Equal([2f, -4f, 1f, 6f, 8f, -12f], outputs["f32_out"].GetProperty("data").EnumerateArray().Select(e => e.GetSingle()));
        AssertTensor(outputs["f16_out"], "FP16", [2, 2]);
        Assert.Equal([3f, -4.5f, 0f, 16f], outputs["f16_out"].GetProperty("data").EnumerateArray().Select(e => e.GetSingle()));
        AssertTensor(outputs["i64_sum"], "INT64", [2, 1]);
        Assert.Equal([9_000_000_001L, -3L], outputs["i64_sum"].GetProperty("data").EnumerateArray().Select(e => e.GetInt64()));
        AssertTensor(outputs["i32_out"], "INT32", [2, 2]);
        Assert.Equal([14, -16, 2_000_000, 0], outputs["i32_out"].GetProperty("data").EnumerateArray().Select(e => e.GetInt32()));
        AssertTensor(outputs["flag_out"], "BOOL", [2, 2]);
        Assert.Equal([false, true, true, false], outputs["flag_out"].GetProperty("data").EnumerateArray().Select(e => e.GetBoolean()));
        AssertTensor(outputs["text_out"], "BYTES", [2, 1]);
        Assert.Equal(["héllo \"you\"", ""], outputs["text_out"].GetProperty("data").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task Infer_OutputsListed_ReturnsOnlyThose()
    {
        var request = MultiRequest(outputs: [new { name = "i32_out" }, new { name = "flag_out" }]);
        using var response = await fixture.Http.PostAsJsonAsync("/v2/models/multi/infer", request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(["flag_out", "i32_out"], body.RootElement.GetProperty("outputs").EnumerateArray().Select(o => o.GetProperty("name").GetString()).Order());
        Assert.False(body.RootElement.TryGetProperty("id", out _));
    }

    [Fact]
    public async Task Infer_UnknownOutputListed_400NamingIt()
    {
        using var response = await fixture.Http.PostAsJsonAsync("/v2/models/multi/infer", MultiRequest(outputs: [new { name = "nope" }]));

        var (code, message) = await ErrorAsync(response, HttpStatusCode.BadRequest);
        Assert.Equal("invalid_input", code);
        Assert.Contains("nope", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Health_LiveAndReady_200()
    {
        using var live = await fixture.Http.GetAsync("/v2/health/live");
        using var ready = await fixture.Http.GetAsync("/v2/health/ready");

        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.True((await live.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("live").GetBoolean());
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.True((await ready.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("ready").GetBoolean());
    }

    [Fact]
    public async Task Metadata_Multi_DescribesInputsAndOutputsWithDynamicBatch()
    {
        using var response = await fixture.Http.GetAsync("/v2/models/multi");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var root = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("multi", root.GetProperty("name").GetString());
        Assert.Equal(["1"], root.GetProperty("versions").EnumerateArray().Select(v => v.GetString()));
        Assert.Equal("onnxruntime_onnx", root.GetProperty("platform").GetString());
        var inputs = root.GetProperty("inputs").EnumerateArray().ToDictionary(i => i.GetProperty("name").GetString()!);
        Assert.Equal(["f16", "f32", "flag", "i32", "i64", "text"], inputs.Keys.Order());
        AssertTensor(inputs["f32"], "FP32", [-1, 3], data: false);
        AssertTensor(inputs["f16"], "FP16", [-1, 2], data: false);
        AssertTensor(inputs["text"], "BYTES", [-1, 1], data: false);
        var outputs = root.GetProperty("outputs").EnumerateArray().ToDictionary(i => i.GetProperty("name").GetString()!);
        AssertTensor(outputs["i64_sum"], "INT64", [-1, 1], data: false);
        AssertTensor(outputs["flag_out"], "BOOL", [-1, 2], data: false);
        Assert.Equal(8, root.GetProperty("parameters").GetProperty("max_batch_size").GetInt32());
    }

    [Fact]
    public async Task Metadata_SeqWithDynamicAxis_ShowsMinusOneForBatchAndSequence()
    {
        var root = await fixture.Http.GetFromJsonAsync<JsonElement>("/v2/models/seq");

        var tokens = root.GetProperty("inputs").EnumerateArray().Single(i => i.GetProperty("name").GetString() == "tokens");
        AssertTensor(tokens, "FP32", [-1, -1, 4], data: false);
    }

    [Fact]
    public async Task Ready_ServedModelAndVersion_200()
    {
        using var model = await fixture.Http.GetAsync("/v2/models/multi/ready");
        using var version = await fixture.Http.GetAsync("/v2/models/multi/versions/1/ready");

        Assert.Equal(HttpStatusCode.OK, model.StatusCode);
        Assert.True((await model.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("ready").GetBoolean());
        Assert.Equal(HttpStatusCode.OK, version.StatusCode);
    }

    [Theory]
    [InlineData("GET", "/v2/models/no-such-model")]
    [InlineData("GET", "/v2/models/no-such-model/ready")]
    [InlineData("GET", "/v2/models/multi/versions/7")]
    [InlineData("POST", "/v2/models/no-such-model/infer")]
    [InlineData("POST", "/v2/models/multi/versions/7/infer")]
    public async Task Endpoints_UnknownModelOrVersion_404UnknownModel(string method, string path)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (method == "POST")
        {
            request.Content = JsonContent.Create(MultiRequest());
        }

        using var response = await fixture.Http.SendAsync(request);

        var (code, message) = await ErrorAsync(response, HttpStatusCode.NotFound);
        Assert.Equal("unknown_model", code);
        Assert.False(string.IsNullOrWhiteSpace(message));
    }

    [Theory]
    [InlineData("""{"inputs":[{"name":"f32","datatype":"INT64","shape":[1,3],"data":[1,2,3]}]}""", "invalid_input", "f32")]
    [InlineData("""{"inputs":[{"name":"f32","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}""", "invalid_input", "f32")]
    [InlineData("""{"inputs":[{"name":"f32","datatype":"FP32","shape":[1,3],"data":[1,2]}]}""", "invalid_input", "f32")]
    [InlineData("""{"inputs":[{"name":"f32","datatype":"FP32","shape":[1,3],"data":[1,2,3]}]}""", "invalid_input", "f16")]
    [InlineData("""{"inputs":[{"name":"f32","datatype":"COMPLEX","shape":[1,3],"data":[1,2,3]}]}""", "invalid_input", "COMPLEX")]
    [InlineData("""{"inputs":{"f32":{"datatype":"FP32","shape":[1,3],"data":[1,2,3]}}}""", "invalid_input", "inputs")]
    [InlineData("""{"inputs":[{"datatype":"FP32","shape":[1],"data":[1]}]}""", "invalid_input", "name")]
    [InlineData("""{"id":5,"inputs":[]}""", "bad_request", "id")]
    [InlineData("""{"parameters":{"priority":99},"inputs":[]}""", "bad_request", "priority")]
    [InlineData("""{"inputs":[""", "bad_request", "JSON")]
    [InlineData("""[1,2]""", "bad_request", "object")]
    public async Task Infer_BadRequest_400WithCodeAndMessageNamingTheProblem(string body, string code, string named)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await fixture.Http.PostAsync("/v2/models/multi/infer", content);

        var (actualCode, message) = await ErrorAsync(response, HttpStatusCode.BadRequest);
        Assert.Equal(code, actualCode);
        Assert.Contains(named, message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Infer_SeqWithoutMask_MaskBuiltFromLengthAndOutputsMatchTheMath()
    {
        var tokens = Tokens(seed: 1, length: 3);
        using var response = await fixture.Http.PostAsJsonAsync("/v2/models/seq/infer", new
        {
            inputs = new[] { new { name = "tokens", datatype = "FP32", shape = new[] { 1, 3, 4 }, data = tokens } },
        });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var outputs = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("outputs").EnumerateArray().ToDictionary(o => o.GetProperty("name").GetString()!);
        var (hidden, pooled) = Expected(tokens, 3);
        AssertTensor(outputs["hidden"], "FP32", [1, 3, 3]);
        AssertClose(hidden, outputs["hidden"]);
        AssertTensor(outputs["pooled"], "FP32", [1, 3]);
        AssertClose(pooled, outputs["pooled"]);
    }

    [Fact]
    public async Task WebSocketInfer_KServeArrayForm_WithAndWithoutMask_SameOutputs()
    {
        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);
        var tokens = Tokens(seed: 2, length: 2);
        var tokensInput = new { name = "tokens", datatype = "FP32", shape = new[] { 1, 2, 4 }, data = tokens };
        var maskInput = new { name = "mask", datatype = "INT64", shape = new[] { 1, 2 }, data = new[] { 1L, 1L } };

        await ws.SendAsync(new { type = "infer", id = "with", model = "seq", inputs = new object[] { tokensInput, maskInput } });
        await ws.SendAsync(new { type = "infer", id = "without", model = "seq", inputs = new object[] { tokensInput } });
        var frames = (await ws.NextAsync(2)).ToDictionary(f => f.GetProperty("id").GetString()!);

        var (hidden, pooled) = Expected(tokens, 2);
        foreach (var frame in frames.Values)
        {
            Assert.Equal("result", frame.GetProperty("type").GetString());
            Assert.Equal("1", frame.GetProperty("model_version").GetString());
            AssertClose(hidden, frame.GetProperty("outputs").GetProperty("hidden"));
            AssertClose(pooled, frame.GetProperty("outputs").GetProperty("pooled"));
        }
    }

    [Fact]
    public async Task Predict_KServeArrayForm_Answers()
    {
        var tokens = Tokens(seed: 3, length: 1);
        using var response = await fixture.Http.PostAsJsonAsync("/predict", new
        {
            model = "seq",
            inputs = new[] { new { name = "tokens", datatype = "FP32", shape = new[] { 1, 1, 4 }, data = tokens } },
        });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var root = await response.Content.ReadFromJsonAsync<JsonElement>();
        AssertClose(Expected(tokens, 1).Pooled, root.GetProperty("outputs").GetProperty("pooled"));
    }

    /// <summary>
    /// Requests of lengths 1..6 sent at once to a model that waits for batch-mates: they are padded into shared batches,
    /// and each one's outputs are exactly its own (the padding is masked out and cut off again).
    /// </summary>
    [Fact]
    public async Task Infer_ConcurrentDifferentLengths_PaddedInOneBatchEachGetsItsOwnOutputs()
    {
        var lengths = Enumerable.Range(0, 16).Select(i => 1 + (i * 5 % 6)).ToArray();
        var tokens = lengths.Select((length, i) => Tokens(seed: 100 + i, length)).ToArray();

        var responses = await Task.WhenAll(lengths.Select(async (length, i) =>
        {
            using var response = await fixture.Http.PostAsJsonAsync("/v2/models/seq-batched/infer", new
            {
                id = $"r{i}",
                inputs = new[] { new { name = "tokens", datatype = "FP32", shape = new[] { 1, length, 4 }, data = tokens[i] } },
            });
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return await response.Content.ReadFromJsonAsync<JsonElement>();
        }));

        for (var i = 0; i < lengths.Length; i++)
        {
            Assert.Equal($"r{i}", responses[i].GetProperty("id").GetString());
            var outputs = responses[i].GetProperty("outputs").EnumerateArray().ToDictionary(o => o.GetProperty("name").GetString()!);
            var (hidden, pooled) = Expected(tokens[i], lengths[i]);
            AssertTensor(outputs["hidden"], "FP32", [1, lengths[i], 3]);
            AssertClose(hidden, outputs["hidden"]);
            AssertClose(pooled, outputs["pooled"]);
        }

        Assert.Contains(responses, r => r.GetProperty("timing").GetProperty("batch_size").GetInt32() > 1);
    }

    private static object MultiRequest(object[]? outputs = null) => new
    {
        inputs = new object[]
        {
            new { name = "f32", datatype = "FP32", shape = new[] { 1, 3 }, data = new[] { 1f, 2f, 3f } },
            new { name = "f16", datatype = "FP16", shape = new[] { 1, 2 }, data = new[] { 1f, 2f } },
            new { name = "i64", datatype = "INT64", shape = new[] { 1, 2 }, data = new[] { 1L, 2L } },
            new { name = "i32", datatype = "INT32", shape = new[] { 1, 2 }, data = new[] { 1, 2 } },
            new { name = "flag", datatype = "BOOL", shape = new[] { 1, 2 }, data = new[] { true, false } },
            new { name = "text", datatype = "BYTES", shape = new[] { 1, 1 }, data = new[] { "a" } },
        },
        outputs,
    };

    private static float[] Tokens(int seed, int length)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, length * 4).Select(_ => MathF.Round((float)(random.NextDouble() * 4 - 2), 3))];
    }

    private static (float[] Hidden, float[] Pooled) Expected(float[] tokens, int length)
    {
        var hidden = new float[length * 3];
        var pooled = new float[3];
        for (var s = 0; s < length; s++)
        {
            for (var j = 0; j < 3; j++)
            {
                var v = B[j];
                for (var k = 0; k < 4; k++)
                {
                    v += tokens[(s * 4) + k] * W[k, j];
                }

                hidden[(s * 3) + j] = v;
                pooled[j] += v / length;
            }
        }

        return (hidden, pooled);
    }

    private static void AssertTensor(JsonElement tensor, string datatype, int[] shape, bool data = true)
    {
        Assert.Equal(datatype, tensor.GetProperty("datatype").GetString());
        Assert.Equal(shape, tensor.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()));
        if (data)
        {
            Assert.Equal(shape.Aggregate(1, (a, b) => a * b), tensor.GetProperty("data").GetArrayLength());
        }
    }

    private static void AssertClose(float[] expected, JsonElement tensor)
    {
        var actual = tensor.GetProperty("data").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4f, $"element {i}: expected {expected[i]}, got {actual[i]}");
        }
    }

    private static async Task<(string Code, string Message)> ErrorAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {status}, got {response.StatusCode}: {text}");
        var root = JsonDocument.Parse(text).RootElement;
        return (root.GetProperty("code").GetString()!, root.GetProperty("error").GetString()!);
    }
}
