using System.Net;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>
/// The WebSocket upgrade and the page that asks for it: no <c>Origin</c> (not a browser) and the frontend's own origin
/// pass, an origin listed in <c>AllowedOrigins</c> passes, any other is refused with 403 before the upgrade.
/// </summary>
public sealed class OriginCheckTests : IAsyncLifetime
{
    private const string Listed = "https://app.example.com";
    private WebApplication _app = null!;
    private Uri _http = null!;
    private Uri _ws = null!;

    public async Task InitializeAsync()
    {
        (_app, _http) = await FrontendFixture.StartGridAsync(FrontendFixture.IsolatedSettings(extra: ("StreamInfer:Frontend:AllowedOrigins:0", Listed)));
        _ws = new UriBuilder(_http) { Scheme = "ws", Path = "/ws" }.Uri;
    }

    public async Task DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task Upgrade_FromAnotherOrigin_Refused403BeforeTheUpgrade()
    {
        using var socket = NewSocket("https://evil.example");

        var failure = await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(_ws, CancellationToken.None));

        Assert.Equal(HttpStatusCode.Forbidden, socket.HttpStatusCode);
        Assert.NotNull(failure);

        // The same refusal over plain HTTP shows the structured error.
        using var http = new HttpClient { BaseAddress = _http };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/ws");
        request.Headers.Add("Origin", "http://localhost:1");
        request.Headers.Add("Connection", "Upgrade");
        request.Headers.Add("Upgrade", "websocket");
        request.Headers.Add("Sec-WebSocket-Version", "13");
        request.Headers.Add("Sec-WebSocket-Key", Convert.ToBase64String(Guid.NewGuid().ToByteArray()));
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("forbidden", await Operations.AdminKeyTests.CodeAsync(response));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("same")]
    [InlineData(Listed)]
    public async Task Upgrade_WithoutOriginSameOriginOrListed_ConnectsAndServes(string? origin)
    {
        using var socket = NewSocket(origin == "same" ? $"http://{_http.Authority}" : origin);
        await socket.ConnectAsync(_ws, CancellationToken.None);

        Assert.Equal(WebSocketState.Open, socket.State);
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
    }

    private static ClientWebSocket NewSocket(string? origin)
    {
        var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        if (origin is not null)
        {
            socket.Options.SetRequestHeader("Origin", origin);
        }

        return socket;
    }
}
