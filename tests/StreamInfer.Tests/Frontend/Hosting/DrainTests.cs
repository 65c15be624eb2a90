using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using StreamInfer.Grains.Hosting;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Hosting;

/// <summary>
/// The frontend's connection limit and its graceful shutdown, each on a grid of its own: at most three connections,
/// and a "gate" model whose lone request waits for a batch-mate until the grains' (fake) clock passes its MaxWait, so
/// a request stays in flight exactly until the test lets it finish.
/// </summary>
public sealed class DrainTests : IAsyncLifetime
{
    private static readonly TimeSpan GateWait = TimeSpan.FromSeconds(10);
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private WebApplication _app = null!;
    private Uri _http = null!;
    private Uri _ws = null!;

    public async Task InitializeAsync()
    {
        (_app, _http) = await FrontendFixture.StartGridAsync(
            FrontendFixture.IsolatedSettings(
                extra:
                [
                    ("StreamInfer:Frontend:MaxConnections", "3"),
                    ("StreamInfer:Frontend:DrainTimeout", "00:00:30"),
                    ("StreamInfer:Models:gate:MaxBatchSize", "2"),
                    ("StreamInfer:Models:gate:MaxWait", "00:00:10"),
                ]),
            b => b.Services.AddKeyedSingleton<TimeProvider>(StreamInferClock.Key, _time));
        _ws = new UriBuilder(_http) { Scheme = "ws", Path = "/ws" }.Uri;
    }

    public async Task DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task Upgrade_BeyondMaxConnections_Refused503UntilOneCloses()
    {
        var held = new List<WsTestClient>();
        for (var i = 0; i < 3; i++)
        {
            held.Add(await WsTestClient.ConnectAsync(_ws));
        }

        var (status, body) = await TryUpgradeAsync();
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal("overloaded", body.GetProperty("error").GetProperty("code").GetString());

        // A closed connection gives its slot back; the served ones were never disturbed.
        await held[0].DisposeAsync();
        await Eventually.UntilAsync(async () => (await TryUpgradeAsync()).Status, s => s == HttpStatusCode.SwitchingProtocols, TimeSpan.FromSeconds(10), "a slot frees when a client leaves");
        await held[1].SendInferAsync("still");
        Assert.Equal("result", (await held[1].NextAsync()).GetProperty("type").GetString());
        foreach (var client in held.Skip(1))
        {
            await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task Stop_RequestInFlight_ClientWarnedNewWorkRefusedRequestFinishesThenClose1001()
    {
        await using var client = await WsTestClient.ConnectAsync(_ws);
        await client.SendInferAsync("before", "gate");
        var drain = _app.Services.GetRequiredService<StreamInfer.Frontend.Hosting.FrontendDrain>();
        await Eventually.UntilAsync(() => Task.FromResult(drain.InFlight), n => n == 1, TimeSpan.FromSeconds(10), "the frontend holds the request");

        // SIGTERM's path: the host stops, and the frontend drains first.
        var stopping = _app.StopAsync();
        var warning = await NextOfTypeAsync(client, "warning");
        Assert.Equal("draining", warning.GetProperty("code").GetString());
        Assert.Equal(30_000, warning.GetProperty("drain_ms").GetInt64());

        // Readiness drops, so that a load balancer stops sending here; new connections and requests are refused.
        using (var http = new HttpClient { BaseAddress = _http })
        {
            using var ready = await http.GetAsync("/readyz");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
            Assert.True((await ready.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("draining").GetBoolean());

            using var predict = await http.PostAsJsonAsync("/predict", new { model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 1 } } } });
            Assert.Equal(HttpStatusCode.ServiceUnavailable, predict.StatusCode);
            Assert.NotNull(predict.Headers.RetryAfter);
        }

        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await TryUpgradeAsync()).Status);
        await client.SendInferAsync("after");
        var refused = await NextOfTypeAsync(client, "error");
        Assert.Equal("after", refused.GetProperty("id").GetString());
        Assert.Equal("model_unavailable", refused.GetProperty("code").GetString());

        // Liveness still answers: the process is alive, only not taking new work.
        using (var http = new HttpClient { BaseAddress = _http })
        {
            using var live = await http.GetAsync("/v2/health/live");
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
            Assert.True((await live.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("live").GetBoolean());
        }

        // The request admitted before the drain is answered once its batch may run, then the socket closes with
        // "going away".
        Assert.False(stopping.IsCompleted);
        await Task.Run(() => _time.Advance(GateWait)).WaitAsync(TimeSpan.FromSeconds(30));
        var result = await NextOfTypeAsync(client, "result");
        Assert.Equal("before", result.GetProperty("id").GetString());
        await Assert.ThrowsAsync<InvalidOperationException>(() => client.NextAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, client.CloseStatus);
        await stopping.WaitAsync(TimeSpan.FromSeconds(60));
    }

    private static async Task<JsonElement> NextOfTypeAsync(WsTestClient client, string type)
    {
        while (true)
        {
            var frame = await client.NextAsync(TimeSpan.FromSeconds(15));
            if (frame.GetProperty("type").GetString() == type)
            {
                return frame;
            }
        }
    }

    /// <summary>Attempts an upgrade; the HTTP status (101 when it succeeded, then closed) and the body of a refusal.</summary>
    private async Task<(HttpStatusCode Status, JsonElement Body)> TryUpgradeAsync()
    {
        using var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        try
        {
            await socket.ConnectAsync(_ws, CancellationToken.None);
            await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
            return (HttpStatusCode.SwitchingProtocols, default);
        }
        catch (WebSocketException)
        {
            // ClientWebSocket does not keep a refusal's body: ask again over plain HTTP for it.
            using var http = new HttpClient();
            using var request = new HttpRequestMessage(HttpMethod.Get, new UriBuilder(_ws) { Scheme = "http" }.Uri);
            request.Headers.Connection.Add("Upgrade");
            request.Headers.Upgrade.Add(new System.Net.Http.Headers.ProductHeaderValue("websocket"));
            request.Headers.Add("Sec-WebSocket-Version", "13");
            request.Headers.Add("Sec-WebSocket-Key", Convert.ToBase64String(Guid.NewGuid().ToByteArray()));
            using var response = await http.SendAsync(request);
            var body = response.Content.Headers.ContentLength > 0 ? await response.Content.ReadFromJsonAsync<JsonElement>() : default;
            Assert.Equal(socket.HttpStatusCode, response.StatusCode);
            return (socket.HttpStatusCode, body);
        }
    }
}
