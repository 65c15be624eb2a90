using System.Net;
using System.Net.Http.Json;
using StackExchange.Redis;
using StreamInfer.Frontend.Auth;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Auth;

/// <summary>Keys kept in a Redis hash, for a cluster's frontends: read at start, re-read as they change, bad entries left out.</summary>
public sealed class RedisKeyTests
{
    private const string Hash = "streaminfer:keys";

    [Fact]
    public async Task KeysInRedisHash_ServedAddedAndRemovedAsTheHashChanges()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = connection.GetDatabase();
        await db.HashSetAsync(Hash, [
            new HashEntry(ApiKeyRing.Hash("first-key"), """{"Identity": "first", "RatePerSecond": 100}"""),
            new HashEntry(ApiKeyRing.Hash("bad-key"), """{"Identity": "not valid!"}"""),
        ]);
        var settings = FrontendFixture.IsolatedSettings(extra:
        [
            ($"{AuthOptions.Section}:RedisHash", Hash),
            ($"{AuthOptions.Section}:Redis", redis.ConnectionString),
            ($"{AuthOptions.Section}:RedisRefresh", "00:00:01"),
        ]);
        var (app, uri) = await FrontendFixture.StartGridAsync(settings);
        try
        {
            using var http = new HttpClient { BaseAddress = uri, Timeout = TimeSpan.FromSeconds(30) };
            Assert.Equal(HttpStatusCode.OK, await PredictAsync(http, "first-key"));
            Assert.Equal(HttpStatusCode.Unauthorized, await PredictAsync(http, "bad-key"));
            Assert.Equal(HttpStatusCode.Unauthorized, await PredictAsync(http, "second-key"));

            await db.HashSetAsync(Hash, ApiKeyRing.Hash("second-key"), """{"Identity": "second"}""");
            await db.HashDeleteAsync(Hash, ApiKeyRing.Hash("first-key"));

            await Eventually.UntilAsync(() => PredictAsync(http, "second-key"), s => s == HttpStatusCode.OK, TimeSpan.FromSeconds(20), "the added key is read");
            Assert.Equal(HttpStatusCode.Unauthorized, await PredictAsync(http, "first-key"));
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    private static async Task<HttpStatusCode> PredictAsync(HttpClient http, string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/predict")
        {
            Content = JsonContent.Create(new { model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 1 } } } }),
        };
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
        using var response = await http.SendAsync(request);
        return response.StatusCode;
    }
}
