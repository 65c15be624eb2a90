using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Grains.Models;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Operations;

/// <summary>Liveness and readiness.</summary>
[Collection(FrontendCollection.Name)]
public sealed class HealthTests(FrontendFixture fixture)
{
    [Fact]
    public async Task Readyz_RepositoryLoaded_200WithEveryModelReadyOrFailed()
    {
        Assert.Equal("ok", await fixture.Http.GetStringAsync("/healthz"));

        using var response = await fixture.Http.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(body.GetProperty("ready").GetBoolean());
        Assert.False(body.GetProperty("draining").GetBoolean());
        var models = body.GetProperty("models").EnumerateArray().ToDictionary(m => m.GetProperty("name").GetString()!, m => m.GetProperty("state").GetString());
        Assert.Equal("ready", models["echo"]);
        Assert.Equal("ready", models["tiny-lm"]);
        Assert.All(models.Values, state => Assert.Contains(state, new[] { "ready", "failed" }));
        Assert.Equal(body.GetProperty("failed").GetArrayLength(), models.Values.Count(s => s == "failed"));

        // KServe's readiness says the same.
        using var kserve = await fixture.Http.GetAsync("/v2/health/ready");
        Assert.Equal(HttpStatusCode.OK, kserve.StatusCode);
    }

    [Fact]
    public async Task Readyz_FromTheFirstRequestAfterStart_NeverReadyBeforeModelsAreWarm()
    {
        // A grid of its own, asked from the moment its server listens, while the built-in tiny-lm is still being
        // written, loaded and warmed.
        var settings = FrontendFixture.IsolatedSettings(tinyLm: true);
        var app = StreamInferApp.Create([], b => b.Configuration.AddInMemoryCollection(settings));
        await app.StartAsync();
        try
        {
            var catalog = app.Services.GetRequiredService<ModelCatalog>();
            using var http = new HttpClient { BaseAddress = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()) };
            var answers = new List<(HttpStatusCode Status, bool Loaded)>();
            while (answers.Count == 0 || answers[^1].Status != HttpStatusCode.OK)
            {
                Assert.True(answers.Count < 10_000, "never ready");
                using var response = await http.GetAsync("/readyz");
                var body = await response.Content.ReadFromJsonAsync<JsonElement>();
                answers.Add((response.StatusCode, catalog.Loaded.IsCompleted));
                Assert.Equal(response.StatusCode == HttpStatusCode.OK, body.GetProperty("ready").GetBoolean());
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    Assert.True(body.GetProperty("loading").GetBoolean() || body.GetProperty("models").EnumerateArray().Any(m => m.GetProperty("state").GetString() == "loading"));
                }
            }

            // Every "ready" came once loading and warm-up had finished.
            Assert.All(answers.Where(a => a.Status == HttpStatusCode.OK), a => Assert.True(a.Loaded));
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }
}
