using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.WebSockets;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>A grid of one test's own, with the limits it sets over the isolated defaults.</summary>
internal sealed class LimitsGrid : IAsyncDisposable
{
    private LimitsGrid(WebApplication app, Uri http)
    {
        App = app;
        Http = http;
        Ws = new UriBuilder(http) { Scheme = "ws", Path = "/ws" }.Uri;
    }

    public WebApplication App { get; }

    public Uri Http { get; }

    public Uri Ws { get; }

    public FrontendDrain Connections => App.Services.GetRequiredService<FrontendDrain>();

    public static async Task<LimitsGrid> StartAsync(bool tinyLm, params (string Key, string? Value)[] limits)
    {
        var (app, http) = await FrontendFixture.StartGridAsync(FrontendFixture.IsolatedSettings(tinyLm, limits));
        return new LimitsGrid(app, http);
    }

    /// <summary>An upgrade's status, and the refusal's body when refused.</summary>
    public async Task<(HttpStatusCode Status, JsonElement Body)> TryUpgradeAsync()
    {
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, new UriBuilder(Ws) { Scheme = "http" }.Uri);
        request.Headers.Connection.Add("Upgrade");
        request.Headers.Upgrade.Add(new System.Net.Http.Headers.ProductHeaderValue("websocket"));
        request.Headers.Add("Sec-WebSocket-Version", "13");
        request.Headers.Add("Sec-WebSocket-Key", Convert.ToBase64String(Guid.NewGuid().ToByteArray()));
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var body = response.StatusCode != HttpStatusCode.SwitchingProtocols
            ? await response.Content.ReadFromJsonAsync<JsonElement>()
            : default;
        return (response.StatusCode, body);
    }

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

/// <summary>
/// The limits a WebSocket connection meets before any work: connections per address, the idle timeout, the receive
/// buffer given back after a large message, and the budget of messages per second.
/// </summary>
public sealed class ConnectionLimitTests
{
    [Fact]
    public async Task Upgrade_PastTheAddressCap_Refused429RateLimitedUntilOneCloses()
    {
        await using var grid = await LimitsGrid.StartAsync(false, ("StreamInfer:Frontend:MaxConnectionsPerLoopback", "2"));
        var held = new List<WsTestClient> { await WsTestClient.ConnectAsync(grid.Ws), await WsTestClient.ConnectAsync(grid.Ws) };

        var (status, body) = await grid.TryUpgradeAsync();
        Assert.Equal(HttpStatusCode.TooManyRequests, status);
        Assert.Equal("rate_limited", body.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("2 connections", body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);

        // The connections held are served, and one closing gives its place back.
        await held[1].SendInferAsync("still");
        Assert.Equal("result", (await held[1].NextAsync()).GetProperty("type").GetString());
        await held[0].DisposeAsync();
        await Eventually.UntilAsync(async () => (await grid.TryUpgradeAsync()).Status, s => s == HttpStatusCode.SwitchingProtocols, TimeSpan.FromSeconds(10), "a place frees when a connection closes");
        await held[1].DisposeAsync();
    }

    [Fact]
    public async Task Idle_NothingSentNothingInFlight_ClosedNormallyAfterTheTimeout_NotWhileARequestRuns()
    {
        await using var grid = await LimitsGrid.StartAsync(
            false,
            ("StreamInfer:Frontend:IdleTimeout", "00:00:00.500"),
            // A lone request waits two seconds for a batch-mate: in flight for four idle timeouts.
            ("StreamInfer:Models:gate:MaxBatchSize", "2"),
            ("StreamInfer:Models:gate:MaxWait", "00:00:02"));
        await using var busy = await WsTestClient.ConnectAsync(grid.Ws);
        await busy.SendInferAsync("waits", "gate");
        await using var idle = await WsTestClient.ConnectAsync(grid.Ws);

        // The idle one is closed, with a reason, and nothing else is sent to it.
        var closed = await Assert.ThrowsAsync<InvalidOperationException>(() => idle.NextAsync(TimeSpan.FromSeconds(15)));
        Assert.Contains("NormalClosure", closed.Message, StringComparison.Ordinal);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, idle.CloseStatus);

        // The busy one gets its answer first, then is closed in turn once idle.
        Assert.Equal("result", (await busy.NextAsync(TimeSpan.FromSeconds(15))).GetProperty("type").GetString());
        await Assert.ThrowsAsync<InvalidOperationException>(() => busy.NextAsync(TimeSpan.FromSeconds(15)));
        Assert.Equal(WebSocketCloseStatus.NormalClosure, busy.CloseStatus);
    }

    [Fact]
    public async Task LargeMessage_Answered_ReceiveBufferBackToItsSmallSize()
    {
        await using var grid = await LimitsGrid.StartAsync(false);
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(grid.Ws, CancellationToken.None);
        await Eventually.UntilAsync(() => Task.FromResult(grid.Connections.ReceiveBufferBytes), b => b == MessageReader.BufferBytes, what: "the connection holds its small buffer");

        // Half a message of 600 KB: the buffer grows to hold it while it is unfinished.
        var large = Encoding.UTF8.GetBytes("[" + new string(' ', 600_000) + "]");
        await socket.SendAsync(large.AsMemory(0, 300_000), WebSocketMessageType.Text, endOfMessage: false, CancellationToken.None);
        await Eventually.UntilAsync(() => Task.FromResult(grid.Connections.ReceiveBufferBytes), b => b >= 300_000, what: "the buffer grows for the large message");

        await socket.SendAsync(large.AsMemory(300_000), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
        var answer = await ReceiveJsonAsync(socket);
        Assert.Equal("bad_request", answer.GetProperty("code").GetString());
        await Eventually.UntilAsync(() => Task.FromResult(grid.Connections.ReceiveBufferBytes), b => b == MessageReader.BufferBytes, what: "the large buffer goes back once the message is handled");
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
    }

    [Fact]
    public async Task UnfinishedLargeMessage_ClientSilent_ConnectionClosedAtTheIdleTimeoutAndItsBufferGone()
    {
        await using var grid = await LimitsGrid.StartAsync(false, ("StreamInfer:Frontend:IdleTimeout", "00:00:00.500"));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(grid.Ws, CancellationToken.None);
        await socket.SendAsync(new byte[500_000], WebSocketMessageType.Text, endOfMessage: false, CancellationToken.None);
        await Eventually.UntilAsync(() => Task.FromResult(grid.Connections.ReceiveBufferBytes), b => b >= 500_000, what: "the buffer holds the unfinished message");

        // The client never finishes it nor answers the close: it is dropped, and nothing of it is held.
        await Eventually.UntilAsync(() => Task.FromResult(grid.Connections.Connections), n => n == 0, TimeSpan.FromSeconds(15), "the connection ends");
        Assert.Equal(0, grid.Connections.ReceiveBufferBytes);
    }

    [Fact]
    public async Task InvalidFrameFlood_RateLimitedThenClosedForPolicy_AnotherConnectionServedMeanwhile()
    {
        await using var grid = await LimitsGrid.StartAsync(
            false,
            ("StreamInfer:Frontend:MaxFramesPerSecond", "20"),
            ("StreamInfer:Frontend:OverBudgetCloseAfter", "00:00:01"));
        await using var flood = await WsTestClient.ConnectAsync(grid.Ws);
        await using var calm = await WsTestClient.ConnectAsync(grid.Ws);

        var sending = Task.Run(async () =>
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            try
            {
                // Ten times the budget, paced so that the test reads every answer as it comes (a client that does
                // not is dropped as a slow consumer instead).
                while (flood.CloseStatus is null && DateTime.UtcNow < deadline)
                {
                    await flood.SendAsync("not json");
                    await Task.Delay(5);
                }
            }
            catch (Exception ex) when (ex is WebSocketException or ObjectDisposedException or InvalidOperationException)
            {
                // Closed under it.
            }
        });

        var codes = new List<string?>();
        try
        {
            while (true)
            {
                codes.Add((await flood.NextAsync(TimeSpan.FromSeconds(30))).GetProperty("code").GetString());
                if (codes.Count == 1)
                {
                    // While the flood is answered, the other connection is served as ever.
                    await calm.SendInferAsync("calm");
                    Assert.Equal("result", (await calm.NextAsync()).GetProperty("type").GetString());
                }
            }
        }
        catch (InvalidOperationException)
        {
            // The connection closed.
        }

        await sending.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Contains("bad_request", codes);
        Assert.Contains("rate_limited", codes);
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, flood.CloseStatus);
        await calm.SendInferAsync("after");
        Assert.Equal("result", (await calm.NextAsync()).GetProperty("type").GetString());
    }

    [Fact]
    public async Task Prompt_PastMaxPromptBytes_PayloadTooLargeBeforeTheGrid_ConnectionServes()
    {
        await using var grid = await LimitsGrid.StartAsync(true, ("StreamInfer:Frontend:MaxPromptBytes", "1024"));
        await using var client = await WsTestClient.ConnectAsync(grid.Ws);

        await client.SendAsync(new { type = "infer", id = "long", model = "tiny-lm", prompt = new string('é', 600), max_tokens = 2 });
        var refused = await client.NextAsync();
        Assert.Equal("payload_too_large", refused.GetProperty("code").GetString());
        Assert.Contains("1200 bytes", refused.GetProperty("message").GetString(), StringComparison.Ordinal);

        await client.SendAsync(new { type = "infer", id = "short", model = "tiny-lm", prompt = "Once upon", max_tokens = 2, stream = false });
        Assert.Equal("done", (await client.NextAsync()).GetProperty("type").GetString());
    }

    internal static async Task<JsonElement> ReceiveJsonAsync(ClientWebSocket socket)
    {
        var buffer = new byte[64 * 1024];
        var count = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        ValueWebSocketReceiveResult received;
        do
        {
            received = await socket.ReceiveAsync(buffer.AsMemory(count), timeout.Token);
            count += received.Count;
        }
        while (!received.EndOfMessage);

        using var document = JsonDocument.Parse(buffer.AsMemory(0, count));
        return document.RootElement.Clone();
    }
}
