using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>Each malformed or oversized binary frame gets a structured error, and the connection keeps serving.</summary>
[Collection(FrontendCollection.Name)]
public sealed class BinaryFrameBadInputTests(FrontendFixture fixture)
{
    [Theory]
    [InlineData("shorter than 4 bytes", "bad_request", false)]
    [InlineData("header length past the message", "bad_request", false)]
    [InlineData("header not JSON", "bad_request", false)]
    [InlineData("header not an object", "bad_request", false)]
    [InlineData("header without an id", "bad_request", false)]
    [InlineData("range past the payload", "invalid_input", true)]
    [InlineData("range length not shape times dtype", "invalid_input", true)]
    [InlineData("data and bytes both", "invalid_input", true)]
    [InlineData("unknown dtype", "invalid_input", true)]
    [InlineData("BYTES length overruns", "invalid_input", true)]
    [InlineData("BOOL not 0 or 1", "invalid_input", true)]
    [InlineData("bytes not [offset, length]", "invalid_input", true)]
    [InlineData("binary_outputs not a boolean", "bad_request", true)]
    public async Task BinaryFrame_Malformed_StructuredTextErrorAndConnectionKeepsServing(string kind, string code, bool hasId)
    {
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);

        await client.SendBinaryAsync(Malformed(kind));

        var error = (await client.NextAsync()).Json;
        WebSocketBadInputTests.AssertError(error, code, hasId ? "bad" : null);
        if (code == "invalid_input")
        {
            Assert.Contains("'x'", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        await AssertStillServesAsync(client);
    }

    [Fact]
    public async Task BinaryFrame_ExactlyAtLimit_Served()
    {
        Assert.True(FrontendFixture.MaxBinaryBytes > FrontendFixture.MaxFrameBytes);
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);

        var message = EchoOfSize(FrontendFixture.MaxBinaryBytes, "at-limit");
        Assert.Equal(FrontendFixture.MaxBinaryBytes, message.Length);
        await client.SendBinaryAsync(message);

        var answer = await client.NextAsync();
        Assert.Equal("at-limit", answer.Header.GetProperty("id").GetString());
        Assert.Equal(BinaryFrames.Split(new WsMessage(System.Net.WebSockets.WebSocketMessageType.Binary, message)).Payload, answer.Output("x"));
    }

    [Fact]
    public async Task BinaryFrame_LargerThanLimit_PayloadTooLargeAndConnectionKeepsServing()
    {
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);

        await client.SendBinaryAsync(EchoOfSize(FrontendFixture.MaxBinaryBytes + 1, "too-big"));

        var error = (await client.NextAsync()).Json;
        WebSocketBadInputTests.AssertError(error, "payload_too_large", null);
        Assert.Contains(FrontendFixture.MaxBinaryBytes.ToString(System.Globalization.CultureInfo.InvariantCulture), error.GetProperty("message").GetString(), StringComparison.Ordinal);
        await AssertStillServesAsync(client);
    }

    [Fact]
    public async Task BinaryFrame_HeaderPastMaxFrameBytes_PayloadTooLargeNamingTheLimitAndConnectionKeepsServing()
    {
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);
        var data = Enumerable.Range(0, FrontendFixture.MaxFrameBytes / 4).Select(i => (float)i).ToArray();
        var header = JsonSerializer.SerializeToUtf8Bytes(new { type = "infer", id = "big-header", model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { data.Length }, data } } });
        Assert.InRange(header.Length, FrontendFixture.MaxFrameBytes + 1, FrontendFixture.MaxBinaryBytes - 4);

        await client.SendBinaryAsync(BinaryFrames.Build(header));

        var error = (await client.NextAsync()).Json;
        WebSocketBadInputTests.AssertError(error, "payload_too_large", null);
        Assert.Contains($"at most {FrontendFixture.MaxFrameBytes} bytes", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        await AssertStillServesAsync(client);
    }

    [Fact]
    public async Task BinaryFrame_InFragmentsHeaderApartFromPayload_Echoed()
    {
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);
        var message = EchoOfSize(FrontendFixture.MaxBinaryBytes, "fragments");
        var headerEnd = 4 + BinaryPrimitives.ReadInt32LittleEndian(message);

        // The length alone, then a part of the header, then its rest with the payload's start, then the payload in pieces.
        await client.SendFragmentsAsync([message[..4], message[4..(headerEnd - 7)], message[(headerEnd - 7)..(headerEnd + 3)], .. message[(headerEnd + 3)..].Chunk(100_000)]);

        var answer = await client.NextAsync();
        Assert.Equal("fragments", answer.Header.GetProperty("id").GetString());
        Assert.Equal(message[headerEnd..], answer.Output("x"));
    }

    /// <summary>A text echo and a binary echo on the same connection are both answered.</summary>
    internal static async Task AssertStillServesAsync(BinaryWsClient client)
    {
        await client.SendTextAsync(new { type = "infer", id = "ok-text", model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { 2 }, data = new[] { 1.5, 2.5 } } } });
        var text = (await client.NextAsync()).Json;
        Assert.Equal("result", text.GetProperty("type").GetString());
        Assert.Equal("ok-text", text.GetProperty("id").GetString());

        var bytes = BinaryFrames.Encode("float32", 1.5, 2.5);
        await client.SendBinaryAsync(BinaryFrames.Build(
            new { type = "infer", id = "ok-binary", model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { 2 }, bytes = new[] { 0, 8 } } } },
            bytes));
        var binary = await client.NextAsync();
        Assert.Equal("ok-binary", binary.Header.GetProperty("id").GetString());
        Assert.Equal(bytes, binary.Output("x"));
    }

    /// <summary>An echo request of one uint8 tensor whose binary message is exactly <paramref name="size"/> bytes.</summary>
    internal static byte[] EchoOfSize(int size, string id, string model = "echo-bulk")
    {
        byte[] Header(int length) => JsonSerializer.SerializeToUtf8Bytes(
            new { type = "infer", id, model, inputs = new { x = new { dtype = "uint8", shape = new[] { 1, length }, bytes = new[] { 0, length } } } });

        // The header's length depends on the payload's (its digits), so settle the two together.
        var length = size - 4;
        while (4 + Header(length).Length + length != size)
        {
            length = size - 4 - Header(length).Length;
        }

        var payload = new byte[length];
        Random.Shared.NextBytes(payload);
        return BinaryFrames.Build(Header(length), payload);
    }

    private static byte[] Malformed(string kind)
    {
        byte[] Infer(object x, byte[] payload, object? binaryOutputs = null)
        {
            var header = new Dictionary<string, object> { ["type"] = "infer", ["id"] = "bad", ["model"] = "echo", ["inputs"] = new { x } };
            if (binaryOutputs is not null)
            {
                header["binary_outputs"] = binaryOutputs;
            }

            return BinaryFrames.Build(header, payload);
        }

        switch (kind)
        {
            case "shorter than 4 bytes":
                return [2, 0, 0];
            case "header length past the message":
                var past = BinaryFrames.Build(Encoding.UTF8.GetBytes("{}"));
                BinaryPrimitives.WriteInt32LittleEndian(past, 3);
                return past;
            case "header not JSON":
                return BinaryFrames.Build(Encoding.UTF8.GetBytes("{\"type\":\"infer\",\"id\":\"bad\""), new byte[8]);
            case "header not an object":
                return BinaryFrames.Build(Encoding.UTF8.GetBytes("[1,2]"), new byte[8]);
            case "header without an id":
                return BinaryFrames.Build(new { type = "infer", model = "echo" }, new byte[8]);
            case "range past the payload":
                return Infer(new { dtype = "uint8", shape = new[] { 16 }, bytes = new[] { 0, 16 } }, new byte[8]);
            case "range length not shape times dtype":
                return Infer(new { dtype = "float32", shape = new[] { 3 }, bytes = new[] { 0, 8 } }, new byte[8]);
            case "data and bytes both":
                return Infer(new { dtype = "float32", shape = new[] { 2 }, data = new[] { 1, 2 }, bytes = new[] { 0, 8 } }, new byte[8]);
            case "unknown dtype":
                return Infer(new { dtype = "complex64", shape = new[] { 1 }, bytes = new[] { 0, 8 } }, new byte[8]);
            case "BYTES length overruns":
                return Infer(new { dtype = "BYTES", shape = new[] { 1 }, bytes = new[] { 0, 7 } }, [100, 0, 0, 0, (byte)'a', (byte)'b', (byte)'c']);
            case "BOOL not 0 or 1":
                return Infer(new { dtype = "bool", shape = new[] { 2 }, bytes = new[] { 0, 2 } }, [1, 2]);
            case "bytes not [offset, length]":
                return Infer(new { dtype = "uint8", shape = new[] { 1 }, bytes = new[] { 0 } }, [1]);
            case "binary_outputs not a boolean":
                return Infer(new { dtype = "uint8", shape = new[] { 1 }, bytes = new[] { 0, 1 } }, [1], binaryOutputs: "yes");
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, null);
        }
    }
}
