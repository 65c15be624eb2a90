using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using StreamInfer.Frontend.WebSockets;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>
/// What a hostile WebSocket client's messages cost: a binary header declaring a large payload that never comes, an
/// endless message, a message that goes on past the byte budget, requests sent after the idle close, and the
/// <c>rate_limited</c> answer to a message dropped over budget.
/// </summary>
public sealed class MessageAbuseTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task BinaryHeader_DeclaresLargePayload_NoBytesFollow_BufferCappedThenClosedPastTheMessageTimeout()
    {
        await using var grid = await LimitsGrid.StartAsync(false, ("StreamInfer:Frontend:MessageReceiveTimeout", "00:00:01"));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(grid.Ws, CancellationToken.None);

        var header = Encoding.UTF8.GetBytes("""{"type":"infer","id":"big","model":"echo","inputs":[{"name":"x","datatype":"UINT8","shape":[33554000],"bytes":[0,33554000]}]}""");
        var start = new byte[4 + header.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(start, (uint)header.Length);
        header.CopyTo(start, 4);
        await socket.SendAsync(start, WebSocketMessageType.Binary, endOfMessage: false, CancellationToken.None);

        // The message's buffer is seen, sized ahead by a mebibyte at most, not by what the header declares.
        var held = await Eventually.UntilAsync(() => Task.FromResult(grid.Connections.ReceiveBufferBytes), b => b >= MessageReader.PreSizeBytes, Wait, "the binary message's buffer is counted");
        Assert.InRange(held, MessageReader.PreSizeBytes, MessageReader.BufferBytes + MessageReader.PreSizeBytes);

        // The client sends no more: the connection is closed for it, and nothing of it is held.
        using var timeout = new CancellationTokenSource(Wait);
        var received = await socket.ReceiveAsync(new byte[4096], timeout.Token);
        Assert.Equal(WebSocketMessageType.Close, received.MessageType);
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, socket.CloseStatus);
        Assert.Contains("not completed in 1 s", socket.CloseStatusDescription, StringComparison.Ordinal);
        await Eventually.UntilAsync(() => Task.FromResult(grid.Connections.Connections), n => n == 0, Wait, "the connection ends");
        Assert.Equal(0, grid.Connections.ReceiveBufferBytes);
    }

    [Fact]
    public async Task Request_SentAfterTheIdleClose_NeverSubmitted()
    {
        await using var grid = await LimitsGrid.StartAsync(
            false,
            ("StreamInfer:Frontend:IdleTimeout", "00:00:00.300"),
            // A lone request would wait long for a batch-mate: once submitted, it stays in flight.
            ("StreamInfer:Models:gate:MaxBatchSize", "2"),
            ("StreamInfer:Models:gate:MaxWait", "00:00:10"));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(grid.Ws, CancellationToken.None);
        using var timeout = new CancellationTokenSource(Wait);
        var received = await socket.ReceiveAsync(new byte[4096], timeout.Token);
        Assert.Equal(WebSocketMessageType.Close, received.MessageType);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);

        // A request after the close could never be answered: it must not reach the grid. The client then stays silent
        // until the server drops it.
        var request = JsonSerializer.SerializeToUtf8Bytes(new { type = "infer", id = "late", model = "gate", inputs = new { x = new { dtype = "float32", shape = new[] { 1, 2 }, data = new[] { 1.5, 2.5 } } } });
        try
        {
            await socket.SendAsync(request, WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
        }
        catch (WebSocketException)
        {
            // On a starved machine the server may already have dropped the client for not answering its close: the
            // request then never left, which is as good.
        }

        var inFlight = 0;
        await Eventually.UntilAsync(
            () =>
            {
                inFlight = Math.Max(inFlight, grid.Connections.InFlight);
                return Task.FromResult(grid.Connections.Connections);
            },
            n => n == 0,
            Wait,
            "the connection ends");
        Assert.Equal(0, inFlight);
    }

    [Fact]
    public async Task OverLimitText_GoesOnPastFourTimesTheLimit_PayloadTooLargeThenClosed1009()
    {
        await using var grid = await LimitsGrid.StartAsync(false, ("StreamInfer:Frontend:MaxFrameBytes", "1024"));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(grid.Ws, CancellationToken.None);

        var fragment = Encoding.UTF8.GetBytes(new string(' ', 1024));
        for (var i = 0; i < 5; i++)
        {
            await socket.SendAsync(fragment, WebSocketMessageType.Text, endOfMessage: false, CancellationToken.None);
        }

        var answer = await ConnectionLimitTests.ReceiveJsonAsync(socket);
        Assert.Equal("payload_too_large", answer.GetProperty("code").GetString());
        using var timeout = new CancellationTokenSource(Wait);
        Assert.Equal(WebSocketMessageType.Close, (await socket.ReceiveAsync(new byte[4096], timeout.Token)).MessageType);
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, socket.CloseStatus);
    }

    [Fact]
    public async Task Message_PastTheByteBudget_RestReadOnlyAsTheBudgetRefills()
    {
        await using var grid = await LimitsGrid.StartAsync(
            false,
            ("StreamInfer:Frontend:MaxFrameBytes", "1024"),
            ("StreamInfer:Frontend:MaxBinaryBytes", "1024"),
            ("StreamInfer:Frontend:MaxBytesPerSecond", "1024"));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(grid.Ws, CancellationToken.None);

        // Three KB against a second's burst of one: the last two are read a second apart at the least.
        var fragment = Encoding.UTF8.GetBytes(new string(' ', 1000));
        var clock = Stopwatch.StartNew();
        await socket.SendAsync(fragment, WebSocketMessageType.Text, endOfMessage: false, CancellationToken.None);
        await socket.SendAsync(fragment, WebSocketMessageType.Text, endOfMessage: false, CancellationToken.None);
        await socket.SendAsync(fragment, WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);

        var answer = await ConnectionLimitTests.ReceiveJsonAsync(socket);
        Assert.Equal("payload_too_large", answer.GetProperty("code").GetString());
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(0.8), $"answered after {clock.Elapsed.TotalSeconds:F2} s");
    }

    [Fact]
    public async Task EmptyContinuationFrames_EachCostsAMessagesPlace_ReadOnlyAsTheBudgetRefills()
    {
        await using var grid = await LimitsGrid.StartAsync(false, ("StreamInfer:Frontend:MaxFramesPerSecond", "20"));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(grid.Ws, CancellationToken.None);

        // Sixty empty frames against a burst of twenty and twenty a second: two seconds at the least.
        var clock = Stopwatch.StartNew();
        await socket.SendAsync("[1"u8.ToArray(), WebSocketMessageType.Text, endOfMessage: false, CancellationToken.None);
        for (var i = 0; i < 60; i++)
        {
            await socket.SendAsync(ReadOnlyMemory<byte>.Empty, WebSocketMessageType.Text, endOfMessage: false, CancellationToken.None);
        }

        await socket.SendAsync("]"u8.ToArray(), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
        var answer = await ConnectionLimitTests.ReceiveJsonAsync(socket);
        Assert.Equal("bad_request", answer.GetProperty("code").GetString());
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1.5), $"answered after {clock.Elapsed.TotalSeconds:F2} s");
    }

    [Fact]
    public async Task Message_OverTheFrameBudget_RateLimitedWithItsId()
    {
        await using var grid = await LimitsGrid.StartAsync(false, ("StreamInfer:Frontend:MaxFramesPerSecond", "1"));
        await using var client = await WsTestClient.ConnectAsync(grid.Ws);

        await client.SendInferAsync("first");
        await client.SendInferAsync("second");
        var answers = await client.NextAsync(2);
        var refused = Assert.Single(answers, a => a.TryGetProperty("code", out var code) && code.GetString() == "rate_limited");
        Assert.Equal("second", refused.GetProperty("id").GetString());
        Assert.Contains(answers, a => a.GetProperty("type").GetString() == "result" && a.GetProperty("id").GetString() == "first");
    }
}
