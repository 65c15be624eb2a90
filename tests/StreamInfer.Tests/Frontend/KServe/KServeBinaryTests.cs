using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.KServe.BinaryTensorClient;

namespace StreamInfer.Tests.Frontend.KServe;

/// <summary>
/// The KServe v2 binary tensor data extension over the real embedded grid, sent by hand as a client following Triton's
/// protocol document would: every datatype of <c>multi</c> in and out, JSON and binary inputs mixed, outputs chosen by
/// name, each answer compared with the JSON path's for the same inputs.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class KServeBinaryTests(FrontendFixture fixture)
{
    /// <summary>The inputs of <c>multi</c>, two rows each: as JSON data and in the raw layout.</summary>
    private static readonly (string Name, string Datatype, long[] Shape, JsonArray Data, byte[] Raw)[] Multi =
    [
        ("f32", "FP32", [2, 3], Json(1f, -2f, 0.5f, 3f, 4f, -6f), Raw(1f, -2f, 0.5f, 3f, 4f, -6f)),
        ("f16", "FP16", [2, 2], Json(1.5, -2.25, 0, 8), Raw((Half)1.5, (Half)(-2.25), (Half)0, (Half)8)),
        ("i64", "INT64", [2, 2], Json(9_000_000_000L, 1L, -5L, 2L), Raw(9_000_000_000L, 1L, -5L, 2L)),
        ("i32", "INT32", [2, 2], Json(7, -8, 1_000_000, 0), Raw(7, -8, 1_000_000, 0)),
        ("flag", "BOOL", [2, 2], Json(true, false, false, true), Raw(true, false, false, true)),
        ("text", "BYTES", [2, 1], Json("héllo \"you\"", string.Empty), Raw("héllo \"you\"", string.Empty)),
    ];

    [Fact]
    public async Task Infer_EveryDatatypeBinaryInAndOut_SameOutputsAsTheJsonPath()
    {
        var (header, binary) = MultiRequest(binaryInputs: _ => true);
        header["parameters"] = new JsonObject { ["binary_data_output"] = true };
        header["id"] = "b1";

        using var request = Request("multi", header, binary);
        using var response = await fixture.Http.SendAsync(request);
        var answer = await ReadOkAsync(response);
        var json = await JsonAnswerAsync();

        Assert.Equal("application/octet-stream", answer.MediaType);
        Assert.True(answer.HasHeaderLength);
        Assert.Equal("b1", answer.Header.GetProperty("id").GetString());
        Assert.Equal("multi", answer.Header.GetProperty("model_name").GetString());
        Assert.Equal(json.Keys.Order(), answer.Binary.Keys.Order());
        foreach (var (name, expected) in json)
        {
            var actual = answer.Outputs[name];
            Assert.Equal(expected.GetProperty("datatype").GetString(), actual.GetProperty("datatype").GetString());
            Assert.Equal(Shape(expected), Shape(actual));
            Assert.Equal(RawOf(expected), answer.Binary[name]);
        }

        Assert.Equal(Raw(2f, -4f, 1f, 6f, 8f, -12f), answer.Binary["f32_out"]);
        Assert.Equal(Raw((Half)3, (Half)(-4.5), (Half)0, (Half)16), answer.Binary["f16_out"]);
        Assert.Equal(Raw(9_000_000_001L, -3L), answer.Binary["i64_sum"]);
        Assert.Equal(Raw(false, true, true, false), answer.Binary["flag_out"]);
        Assert.Equal(Raw("héllo \"you\"", string.Empty), answer.Binary["text_out"]);
    }

    [Fact]
    public async Task Infer_MixedJsonAndBinaryInputs_JsonAnswerEqualToTheJsonPath()
    {
        var (header, binary) = MultiRequest(binaryInputs: name => name is "f32" or "flag" or "text");

        using var request = Request("multi", header, binary);
        using var response = await fixture.Http.SendAsync(request);
        var answer = await ReadOkAsync(response);
        var json = await JsonAnswerAsync();

        Assert.Equal("application/json", answer.MediaType);
        Assert.False(answer.HasHeaderLength);
        Assert.Empty(answer.Binary);
        Assert.Equal(json.Keys.Order(), answer.Outputs.Keys.Order());
        foreach (var (name, expected) in json)
        {
            Assert.Equal(RawOf(expected), RawOf(answer.Outputs[name]));
        }
    }

    [Fact]
    public async Task Infer_OutputsNamedWithBinaryData_OnlyThoseInTheOrderAsked()
    {
        var (header, binary) = MultiRequest(binaryInputs: name => name != "i64");
        header["outputs"] = new JsonArray(
            new JsonObject { ["name"] = "text_out", ["parameters"] = new JsonObject { ["binary_data"] = true } },
            new JsonObject { ["name"] = "i64_sum" },
            new JsonObject { ["name"] = "f16_out", ["parameters"] = new JsonObject { ["binary_data"] = true } });

        using var request = Request("multi", header, binary);
        using var response = await fixture.Http.SendAsync(request);
        var answer = await ReadOkAsync(response);

        Assert.Equal(["text_out", "i64_sum", "f16_out"], answer.OutputNames);
        Assert.Equal(["f16_out", "text_out"], answer.Binary.Keys.Order());
        Assert.Equal(Raw("héllo \"you\"", string.Empty), answer.Binary["text_out"]);
        Assert.Equal(Raw((Half)3, (Half)(-4.5), (Half)0, (Half)16), answer.Binary["f16_out"]);
        Assert.Equal([9_000_000_001L, -3L], answer.Outputs["i64_sum"].GetProperty("data").EnumerateArray().Select(e => e.GetInt64()));
        Assert.Equal(4 + 12 + 4, answer.Outputs["text_out"].GetProperty("parameters").GetProperty("binary_data_size").GetInt32());
    }

    [Fact]
    public async Task Infer_BinaryDataOutputWithOneOutputFalse_ThatOneIsJsonTheOthersBinary()
    {
        var (header, binary) = MultiRequest(binaryInputs: _ => true);
        header["parameters"] = new JsonObject { ["binary_data_output"] = true };
        header["outputs"] = new JsonArray(
            new JsonObject { ["name"] = "f32_out", ["parameters"] = new JsonObject { ["binary_data"] = false } },
            new JsonObject { ["name"] = "i32_out" });

        using var request = Request("multi", header, binary);
        using var response = await fixture.Http.SendAsync(request);
        var answer = await ReadOkAsync(response);

        Assert.Equal(["f32_out", "i32_out"], answer.OutputNames);
        Assert.Equal(["i32_out"], answer.Binary.Keys);
        Assert.Equal([2f, -4f, 1f, 6f, 8f, -12f], answer.Outputs["f32_out"].GetProperty("data").EnumerateArray().Select(e => e.GetSingle()));
        Assert.Equal(Raw(14, -16, 2_000_000, 0), answer.Binary["i32_out"]);
    }

    [Fact]
    public async Task Infer_JsonRequestAskingBinaryOutputs_AnswersBinaryEqualToTheJsonPath()
    {
        var (header, _) = MultiRequest(binaryInputs: _ => false);
        header["parameters"] = new JsonObject { ["binary_data_output"] = true };

        using var content = new StringContent(header.ToJsonString(), Encoding.UTF8, "application/json");
        using var response = await fixture.Http.PostAsync("/v2/models/multi/infer", content);
        var answer = await ReadOkAsync(response);
        var json = await JsonAnswerAsync();

        Assert.True(answer.HasHeaderLength);
        Assert.Equal(json.Keys.Order(), answer.Binary.Keys.Order());
        foreach (var (name, expected) in json)
        {
            Assert.Equal(RawOf(expected), answer.Binary[name]);
        }
    }

    /// <summary>An image-sized FP32 tensor (ten times the JSON limit), BYTES and BOOL through <c>echo</c>: each comes
    /// back byte for byte.</summary>
    [Fact]
    public async Task Infer_EchoImageSizedFp32BytesAndBool_RoundTripByteForByte()
    {
        var image = Raw(Enumerable.Range(0, 3 * 224 * 224).Select(i => (float)Math.Sin(i)).ToArray());
        Assert.True(image.Length > 8 * FrontendFixture.MaxFrameBytes);
        var words = Raw(string.Empty, "héllo", "日本語", "a\0b");
        var mask = Raw(true, false, true, true, false);
        var header = new JsonObject
        {
            ["inputs"] = new JsonArray(
                Input("image", "FP32", [1, 3, 224, 224], image),
                Input("words", "BYTES", [4], words),
                Input("mask", "BOOL", [5], mask)),
            ["parameters"] = new JsonObject { ["binary_data_output"] = true },
        };

        using var request = Request("echo", header, [.. image, .. words, .. mask]);
        using var response = await fixture.Http.SendAsync(request);
        var answer = await ReadOkAsync(response);

        Assert.Equal(image, answer.Binary["image"]);
        Assert.Equal(words, answer.Binary["words"]);
        Assert.Equal(mask, answer.Binary["mask"]);
        Assert.Equal([1L, 3, 224, 224], Shape(answer.Outputs["image"]));
        Assert.Equal("BYTES", answer.Outputs["words"].GetProperty("datatype").GetString());
    }

    /// <summary>Requests in flight together, each with bytes of its own: every answer is its own request's bytes, so no
    /// body went back to the pool while something still read it.</summary>
    [Fact]
    public async Task Infer_ConcurrentBinaryRequests_EachAnsweredWithItsOwnBytes()
    {
        var payloads = Enumerable.Range(0, 16).Select(i => Raw(Enumerable.Range(0, 20_000 + (i * 1000)).Select(j => (float)(i * 1_000_000 + j)).ToArray())).ToArray();

        var answers = await Task.WhenAll(payloads.Select(async payload =>
        {
            var header = new JsonObject
            {
                ["inputs"] = new JsonArray(Input("x", "FP32", [1, payload.Length / 4], payload)),
                ["outputs"] = new JsonArray(new JsonObject { ["name"] = "x", ["parameters"] = new JsonObject { ["binary_data"] = true } }),
            };
            using var request = Request("echo", header, payload);
            using var response = await fixture.Http.SendAsync(request);
            return await ReadOkAsync(response);
        }));

        for (var i = 0; i < payloads.Length; i++)
        {
            Assert.Equal(payloads[i], answers[i].Binary["x"]);
        }
    }

    [Fact]
    public async Task Infer_ChunkedBinaryBodyWithoutContentType_Answers()
    {
        var (header, binary) = MultiRequest(binaryInputs: _ => true);
        header["parameters"] = new JsonObject { ["binary_data_output"] = true };
        using var request = Request("multi", header, binary);
        request.Content = new StreamContent(new MemoryStream(await request.Content!.ReadAsByteArrayAsync()));
        request.Headers.TransferEncodingChunked = true;

        using var response = await fixture.Http.SendAsync(request);
        var answer = await ReadOkAsync(response);

        Assert.Null(request.Content.Headers.ContentLength);
        Assert.Equal(Raw(14, -16, 2_000_000, 0), answer.Binary["i32_out"]);
    }

    [Fact]
    public async Task ServerMetadata_ListsTheBinaryTensorDataExtension()
    {
        var root = await fixture.Http.GetFromJsonAsync<JsonElement>("/v2");

        Assert.Equal(["binary_tensor_data"], root.GetProperty("extensions").EnumerateArray().Select(e => e.GetString()));
    }

    /// <summary>(header, binary) for <c>multi</c>, the inputs <paramref name="binaryInputs"/> picks sent as binary data.</summary>
    private static (JsonObject Header, byte[] Binary) MultiRequest(Func<string, bool> binaryInputs)
    {
        var inputs = new JsonArray();
        var binary = new List<byte>();
        foreach (var (name, datatype, shape, data, raw) in Multi)
        {
            if (binaryInputs(name))
            {
                inputs.Add(Input(name, datatype, shape, raw));
                binary.AddRange(raw);
            }
            else
            {
                inputs.Add(new JsonObject { ["name"] = name, ["datatype"] = datatype, ["shape"] = new JsonArray([.. shape.Select(d => JsonValue.Create(d))]), ["data"] = data.DeepClone() });
            }
        }

        return (new JsonObject { ["inputs"] = inputs }, [.. binary]);
    }

    /// <summary>The JSON path's outputs for <see cref="Multi"/>, by name.</summary>
    private async Task<Dictionary<string, JsonElement>> JsonAnswerAsync()
    {
        var (header, _) = MultiRequest(binaryInputs: _ => false);
        using var content = new StringContent(header.ToJsonString(), Encoding.UTF8, "application/json");
        using var response = await fixture.Http.PostAsync("/v2/models/multi/infer", content);
        return (await ReadOkAsync(response)).Outputs;
    }

    private static async Task<Answer> ReadOkAsync(HttpResponseMessage response)
    {
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        return await ReadAsync(response);
    }

    private static long[] Shape(JsonElement tensor) => [.. tensor.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64())];

    private static JsonArray Json<T>(params T[] values) => (JsonArray)JsonSerializer.SerializeToNode(values)!;
}
