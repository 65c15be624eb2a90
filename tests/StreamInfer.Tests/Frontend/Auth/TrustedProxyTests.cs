using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Auth;

/// <summary>
/// Without keys, the caller is its address: <c>X-Client-Id</c> and <c>X-Forwarded-For</c> name it only when they come
/// from a trusted proxy, so a client cannot spend another's rate and backlog, nor get a fresh bucket per request; and the
/// sessions HTTP callers leave behind deactivate once idle.
/// </summary>
public sealed class TrustedProxyTests
{
    private static readonly object EchoBody = new { model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 1 } } } };

    [Fact]
    public async Task XClientIdAndForwardedFor_FromUntrustedAddress_Ignored()
    {
        await using var grid = await Grid.StartAsync("10.9.9.9");

        using var first = await grid.PredictAsync(("X-Client-Id", "alice"), ("X-Forwarded-For", "192.0.2.1"));
        using var second = await grid.PredictAsync(("X-Client-Id", "bob"), ("X-Forwarded-For", "192.0.2.2"));

        // One bucket of one token: the loopback caller's, whatever it says it is.
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, second.StatusCode);
    }

    [Fact]
    public async Task XClientId_FromTrustedProxy_NamesTheClient()
    {
        await using var grid = await Grid.StartAsync("127.0.0.0/8");

        using var alice = await grid.PredictAsync(("X-Client-Id", "alice"));
        using var bob = await grid.PredictAsync(("X-Client-Id", "bob"));
        using var aliceAgain = await grid.PredictAsync(("X-Client-Id", "alice"));

        Assert.Equal(HttpStatusCode.OK, alice.StatusCode);
        Assert.Equal(HttpStatusCode.OK, bob.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, aliceAgain.StatusCode);
    }

    [Fact]
    public async Task ForwardedFor_FromTrustedProxy_IsTheCallersAddress()
    {
        await using var grid = await Grid.StartAsync("127.0.0.1");

        using var one = await grid.PredictAsync(("X-Forwarded-For", "192.0.2.1"));
        using var two = await grid.PredictAsync(("X-Forwarded-For", "192.0.2.2"));
        using var oneAgain = await grid.PredictAsync(("X-Forwarded-For", "192.0.2.1"));

        Assert.Equal(HttpStatusCode.OK, one.StatusCode);
        Assert.Equal(HttpStatusCode.OK, two.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, oneAgain.StatusCode);
    }

    [Fact]
    public async Task RotatingClientIds_SessionsDeactivateWhenIdle()
    {
        // Sessions are collected as any idle grain is; here after 2 s instead of Orleans' 15 min.
        await using var grid = await Grid.StartAsync("127.0.0.1", b => b.Services.Configure<GrainCollectionOptions>(o =>
        {
            o.CollectionQuantum = TimeSpan.FromMilliseconds(500);
            o.ClassSpecificCollectionAge["StreamInfer.Grains.Sessions.ClientSessionGrain"] = TimeSpan.FromSeconds(2);
        }));

        for (var i = 0; i < 20; i++)
        {
            using var response = await grid.PredictAsync(("X-Client-Id", $"rotating-{i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var management = grid.App.Services.GetRequiredService<IGrainFactory>().GetGrain<IManagementGrain>(0);
        async Task<int> SessionsAsync() => (await management.GetSimpleGrainStatistics())
            .Where(s => s.GrainType.Contains("ClientSession", StringComparison.Ordinal)).Sum(s => s.ActivationCount);
        Assert.True(await SessionsAsync() >= 20);

        await Eventually.UntilAsync(SessionsAsync, n => n == 0, TimeSpan.FromSeconds(30), "the idle sessions deactivate");
    }

    /// <summary>A grid without keys trusting <c>proxies</c>, whose sessions get one token each (and no refill to speak of).</summary>
    private sealed class Grid : IAsyncDisposable
    {
        private Grid(WebApplication app, Uri http)
        {
            App = app;
            Http = new HttpClient { BaseAddress = http, Timeout = TimeSpan.FromSeconds(30) };
        }

        public WebApplication App { get; }

        private HttpClient Http { get; }

        public static async Task<Grid> StartAsync(string proxies, Action<WebApplicationBuilder>? configure = null)
        {
            var settings = FrontendFixture.IsolatedSettings(
                extra: [("StreamInfer:Auth:TrustedProxies:0", proxies), ("StreamInfer:Session:Burst", "1"), ("StreamInfer:Session:RatePerSecond", "0.001")]);
            var (app, http) = await FrontendFixture.StartGridAsync(settings, configure);
            return new Grid(app, http);
        }

        public async Task<HttpResponseMessage> PredictAsync(params (string Name, string Value)[] headers)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/predict") { Content = JsonContent.Create(EchoBody) };
            foreach (var (name, value) in headers)
            {
                request.Headers.Add(name, value);
            }

            return await Http.SendAsync(request);
        }

        public async ValueTask DisposeAsync()
        {
            Http.Dispose();
            await App.StopAsync();
            await App.DisposeAsync();
        }
    }
}
