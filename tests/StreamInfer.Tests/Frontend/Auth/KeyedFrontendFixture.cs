using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using StreamInfer.Frontend.Auth;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Auth;

/// <summary>
/// The embedded default with API keys configured (the built-in <c>echo</c> and <c>tiny-lm</c>, gRPC on): every serving
/// endpoint needs a key. Keys: <see cref="Open"/> (no limits of its own), <see cref="Low"/> (priority ceiling 0),
/// <see cref="EchoOnly"/> (models: echo), <see cref="Slow"/> (burst 2, a token every 100 s), <see cref="OneAtATime"/>
/// (one connection at a time).
/// </summary>
public sealed class KeyedFrontendFixture : IAsyncLifetime
{
    public const string Open = "open-key-4f1c2a9e7b";
    public const string Low = "low-key-8d3b6e0a2c";
    public const string EchoOnly = "echo-key-1a7c5d9f3e";
    public const string Slow = "slow-key-6b2e8f4a0d";
    public const string OneAtATime = "one-key-9e4a1c7b3f";

    public WebApplication App { get; private set; } = null!;

    public Uri HttpUri { get; private set; } = null!;

    public Uri WsUri { get; private set; } = null!;

    public Uri GrpcUri { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        GrpcUri = new Uri($"http://127.0.0.1:{Ports.Free()}");
        var settings = FrontendFixture.IsolatedSettings(tinyLm: true, ("StreamInfer:Frontend:GrpcUrl", GrpcUri.ToString().TrimEnd('/')));
        Key(settings, 0, Open, "open");
        Key(settings, 1, Low, "low", ("MaxPriority", "0"));
        Key(settings, 2, EchoOnly, "echo-only", ("Models:0", "echo"));
        Key(settings, 3, Slow, "slow", ("RatePerSecond", "0.01"), ("Burst", "2"));
        Key(settings, 4, OneAtATime, "single", ("MaxConnections", "1"));
        (App, HttpUri) = await FrontendFixture.StartGridAsync(settings);
        WsUri = new UriBuilder(HttpUri) { Scheme = "ws", Path = "/ws" }.Uri;
    }

    /// <summary>A client that sends <paramref name="key"/> as a bearer token (none when null).</summary>
    public HttpClient Http(string? key)
    {
        var http = new HttpClient { BaseAddress = HttpUri, Timeout = TimeSpan.FromSeconds(30) };
        if (key is not null)
        {
            http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
        }

        return http;
    }

    /// <summary>A WebSocket connection with <paramref name="key"/> in its <c>Authorization</c> header.</summary>
    public Task<WsTestClient> ConnectAsync(string key) => WsTestClient.ConnectAsync(WsUri, o => o.SetRequestHeader("Authorization", $"Bearer {key}"));

    /// <summary>The HTTP status a WebSocket upgrade configured by <paramref name="configure"/> is refused with.</summary>
    public async Task<System.Net.HttpStatusCode> RefusedUpgradeAsync(Action<ClientWebSocketOptions> configure)
    {
        using var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        configure(socket.Options);
        await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(WsUri, CancellationToken.None));
        return socket.HttpStatusCode;
    }

    public async Task DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
    }

    private static void Key(Dictionary<string, string?> settings, int index, string key, string identity, params (string Name, string Value)[] limits)
    {
        var at = $"{AuthOptions.Section}:Keys:{index}";
        settings[$"{at}:Hash"] = ApiKeyRing.Hash(key);
        settings[$"{at}:Identity"] = identity;
        foreach (var (name, value) in limits)
        {
            settings[$"{at}:{name}"] = value;
        }
    }
}

[CollectionDefinition(Name)]
public sealed class KeyedFrontendCollection : ICollectionFixture<KeyedFrontendFixture>
{
    public const string Name = "keyed-frontend";
}
