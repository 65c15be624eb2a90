using System.Net.WebSockets;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>
/// Binary frames through the real app: each request's raw bytes go through the grid and come back in a binary result
/// whose outputs equal what the same request sent as JSON gets; <c>binary_outputs</c> chooses the result's kind.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class BinaryFrameTests(FrontendFixture fixture)
{
    /// <summary>One input of every kind the <c>multi</c> model takes, two rows each.</summary>
    private static readonly (string Name, string Dtype, int[] Shape, string Data)[] MultiInputs =
    [
        ("f32", "float32", [2, 3], "[1, 2.5, -3, 4, 0.1, 6]"),
        ("f16", "float16", [2, 2], "[0.5, 1, -2, 1000]"),
        ("i64", "int64", [2, 2], "[1, 2, 9007199254740993, -4]"),
        ("i32", "int32", [2, 2], "[5, -6, 7, 2147483]"),
        ("flag", "bool", [2, 2], "[true, false, false, true]"),
        ("text", "string", [2, 1], "[\"x\", \"héllo wörld\"]"),
    ];

    [Theory]
    [InlineData("float32", "[1.5, -2.25, 3, 0.1]")]
    [InlineData("float16", "[0.5, -1.5, 65504, 0.0999]")]
    [InlineData("float64", "[1e-300, 2.5, -0.1]")]
    [InlineData("int64", "[9223372036854775807, -1, 0]")]
    [InlineData("int32", "[-2147483648, 7]")]
    [InlineData("int16", "[-300, 300]")]
    [InlineData("int8", "[-128, 127]")]
    [InlineData("uint8", "[0, 255, 7]")]
    [InlineData("bool", "[true, false, true]")]
    [InlineData("string", "[\"a\", \"héllo\", \"\"]")]
    public async Task BinaryInfer_EachDtypeThroughEcho_SameBytesBackAndSameAsTextPath(string dtype, string data)
    {
        var values = Values(data);
        var bytes = BinaryFrames.Encode(dtype, values);
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);

        await client.SendBinaryAsync(BinaryFrames.Build(
            new { type = "infer", id = "b", model = "echo", inputs = new { x = new { dtype, shape = new[] { values.Length }, bytes = new[] { 0, bytes.Length } } } },
            bytes));
        var binary = await client.NextAsync();
        await client.SendTextAsync(new { type = "infer", id = "t", model = "echo", inputs = new { x = new { dtype, shape = new[] { values.Length }, data = values } } });
        var text = (await client.NextAsync()).Json;

        var header = binary.Header;
        Assert.Equal("result", header.GetProperty("type").GetString());
        Assert.Equal("b", header.GetProperty("id").GetString());
        Assert.Equal("echo", header.GetProperty("model").GetString());
        Assert.True(header.GetProperty("timing").GetProperty("batch_size").GetInt32() >= 1);
        var output = header.GetProperty("outputs").GetProperty("x");
        Assert.Equal(dtype, output.GetProperty("dtype").GetString());
        Assert.Equal([values.Length], output.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()));
        Assert.Equal(bytes, binary.Output("x"));
        Assert.Equal(BinaryFrames.Encode(dtype, text.GetProperty("outputs").GetProperty("x").GetProperty("data").EnumerateArray()), binary.Output("x"));
    }

    [Fact]
    public async Task BinaryInfer_MultiModelEveryDtype_OutputsEqualTextPath()
    {
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);

        var binary = await InferMultiAsync(client, asBytes: _ => true);
        var text = await InferMultiTextAsync(client);

        AssertSameOutputs(text, binary);
    }

    [Fact]
    public async Task BinaryInfer_DataAndBytesMixed_OutputsEqualTextPath()
    {
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);

        var binary = await InferMultiAsync(client, asBytes: name => name is "f16" or "i32" or "text");
        var text = await InferMultiTextAsync(client);

        AssertSameOutputs(text, binary);
    }

    [Fact]
    public async Task BinaryInfer_BinaryOutputsFalse_JsonResultEqualToTextPath()
    {
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);

        var answer = await InferMultiAsync(client, asBytes: _ => true, binaryOutputs: false);
        var text = await InferMultiTextAsync(client);

        Assert.Equal(WebSocketMessageType.Text, answer.Type);
        var json = answer.Json;
        Assert.Equal("result", json.GetProperty("type").GetString());
        Assert.Equal("multi-binary", json.GetProperty("id").GetString());
        Assert.Equal(text.GetProperty("outputs").GetRawText(), json.GetProperty("outputs").GetRawText());
    }

    [Fact]
    public async Task TextInfer_BinaryOutputsTrue_BinaryResultEqualToTextPath()
    {
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);

        await client.SendTextAsync(MultiTextFrame("asks-binary", binaryOutputs: true));
        var binary = await client.NextAsync();
        var text = await InferMultiTextAsync(client);

        Assert.Equal("asks-binary", binary.Header.GetProperty("id").GetString());
        AssertSameOutputs(text, binary);
    }

    [Fact]
    public async Task BinaryInfer_ManyInFlightOnOneConnection_EachAnsweredWithItsOwnBytes()
    {
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);
        const int count = 50;

        for (var i = 0; i < count; i++)
        {
            var bytes = BinaryFrames.Encode("int32", i, -i, i * 1000);
            await client.SendBinaryAsync(BinaryFrames.Build(
                new { type = "infer", id = $"r{i}", model = "echo", inputs = new { x = new { dtype = "int32", shape = new[] { 3 }, bytes = new[] { 0, bytes.Length } } } },
                bytes));
        }

        var seen = new HashSet<string>();
        for (var i = 0; i < count; i++)
        {
            var answer = await client.NextAsync();
            var id = answer.Header.GetProperty("id").GetString()!;
            Assert.True(seen.Add(id), $"{id} answered twice");
            var n = int.Parse(id[1..], System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(BinaryFrames.Encode("int32", n, -n, n * 1000), answer.Output("x"));
        }
    }

    [Fact]
    public async Task BinaryInfer_LargerThanTextLimit_Served()
    {
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);
        var bytes = new byte[FrontendFixture.MaxFrameBytes * 4];
        Random.Shared.NextBytes(bytes);

        await client.SendBinaryAsync(BinaryFrames.Build(
            new { type = "infer", id = "big", model = "echo-bulk", inputs = new { x = new { dtype = "uint8", shape = new[] { 1, bytes.Length }, bytes = new[] { 0, bytes.Length } } } },
            bytes));

        Assert.Equal(bytes, (await client.NextAsync()).Output("x"));
    }

    internal static JsonElement[] Values(string json) => [.. JsonDocument.Parse(json).RootElement.EnumerateArray().Select(e => e.Clone())];

    /// <summary>Sends <see cref="MultiInputs"/> to <c>multi</c> in a binary frame, those <paramref name="asBytes"/> picks
    /// as byte ranges of the payload and the others as JSON data; returns the answer.</summary>
    private static async Task<WsMessage> InferMultiAsync(BinaryWsClient client, Func<string, bool> asBytes, bool? binaryOutputs = null)
    {
        var inputs = new Dictionary<string, object>();
        var payload = new List<byte[]>();
        var offset = 0;
        foreach (var (name, dtype, shape, data) in MultiInputs)
        {
            var values = Values(data);
            if (asBytes(name))
            {
                var bytes = BinaryFrames.Encode(dtype, values);
                inputs[name] = new { dtype, shape, bytes = new[] { offset, bytes.Length } };
                payload.Add(bytes);
                offset += bytes.Length;
            }
            else
            {
                inputs[name] = new { dtype, shape, data = values };
            }
        }

        var header = new Dictionary<string, object> { ["type"] = "infer", ["id"] = "multi-binary", ["model"] = "multi", ["inputs"] = inputs };
        if (binaryOutputs is { } binary)
        {
            header["binary_outputs"] = binary;
        }

        await client.SendBinaryAsync(BinaryFrames.Build(header, [.. payload]));
        return await client.NextAsync();
    }

    private static async Task<JsonElement> InferMultiTextAsync(BinaryWsClient client)
    {
        await client.SendTextAsync(MultiTextFrame("multi-text"));
        var text = (await client.NextAsync()).Json;
        Assert.Equal("result", text.GetProperty("type").GetString());
        return text;
    }

    private static Dictionary<string, object> MultiTextFrame(string id, bool? binaryOutputs = null)
    {
        var frame = new Dictionary<string, object>
        {
            ["type"] = "infer",
            ["id"] = id,
            ["model"] = "multi",
            ["inputs"] = MultiInputs.ToDictionary(i => i.Name, i => (object)new { dtype = i.Dtype, shape = i.Shape, data = Values(i.Data) }),
        };
        if (binaryOutputs is { } binary)
        {
            frame["binary_outputs"] = binary;
        }

        return frame;
    }

    /// <summary>Every output of the text result is in the binary one with the same dtype, shape and values.</summary>
    private static void AssertSameOutputs(JsonElement text, WsMessage binary)
    {
        var header = binary.Header;
        Assert.Equal("result", header.GetProperty("type").GetString());
        var binaryOutputs = header.GetProperty("outputs");
        var textOutputs = text.GetProperty("outputs").EnumerateObject().ToList();
        Assert.Equal(textOutputs.Select(o => o.Name).Order(), binaryOutputs.EnumerateObject().Select(o => o.Name).Order());
        Assert.Equal(6, textOutputs.Count);
        foreach (var output in textOutputs)
        {
            var dtype = output.Value.GetProperty("dtype").GetString()!;
            var inBinary = binaryOutputs.GetProperty(output.Name);
            Assert.Equal(dtype, inBinary.GetProperty("dtype").GetString());
            Assert.Equal(output.Value.GetProperty("shape").GetRawText(), inBinary.GetProperty("shape").GetRawText());
            Assert.Equal(BinaryFrames.Encode(dtype, output.Value.GetProperty("data").EnumerateArray()), binary.Output(output.Name));
        }
    }
}
