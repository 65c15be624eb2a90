using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using StreamInfer.Grains.Placement;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models.Versions;

/// <summary>
/// A rollout whose prepare takes longer than the cluster's default response timeout (shortened here to 2 s) still
/// commits, and answers with its outcome: the long calls carry timeouts of their own.
/// </summary>
public sealed class PrepareTimeoutTests
{
    private static readonly TimeSpan ShortTimeout = TimeSpan.FromSeconds(2);

    [Fact]
    public async Task Rollout_PrepareLongerThanTheDefaultResponseTimeout_Commits()
    {
        // "busy" holds the device for 6 s per batch: a warm-up queued behind it waits that long.
        var settings = FrontendFixture.IsolatedSettings(
            false,
            ("StreamInfer:Models:busy:MaxBatchSize", "1"),
            ("StreamInfer:Models:busy:FixedDelay", "00:00:06"));
        var repository = settings["StreamInfer:Repository:Path"]!;
        TestModels.WriteScale(repository, "scaled", "1", 1f);
        TestModels.WriteScale(repository, "scaled", "2", 2f);
        var (app, uri) = await FrontendFixture.StartGridAsync(settings, b =>
        {
            b.Services.Configure<SiloMessagingOptions>(o => o.ResponseTimeout = ShortTimeout);
            b.Services.Configure<ClientMessagingOptions>(o => o.ResponseTimeout = ShortTimeout);
        });
        try
        {
            Assert.Equal(ShortTimeout, app.Services.GetRequiredService<IOptions<SiloMessagingOptions>>().Value.ResponseTimeout);
            using var http = new HttpClient { BaseAddress = uri, Timeout = TimeSpan.FromSeconds(60) };
            var client = app.Services.GetRequiredService<IClusterClient>();
            var silo = SiloNames.ForKey(app.Services.GetRequiredService<ILocalSiloDetails>().Name);
            var busy = client.GetGrain<IBatcherGrain>(new BatcherKey("busy", silo, "cpu0").ToString());

            var hold = http.PostAsJsonAsync("/predict", new { model = "busy", inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 1f } } } });
            await Eventually.UntilAsync(() => busy.GetStatusAsync(), s => s.Running > 0, what: "the busy batch holds the device");
            using var rollout = await http.PostAsJsonAsync("/api/models/scaled/rollout", new { version = "2" });
            var outcome = JsonDocument.Parse(await rollout.Content.ReadAsStringAsync()).RootElement;
            using var held = await hold;

            Assert.Equal(HttpStatusCode.OK, rollout.StatusCode);
            Assert.Equal("committed", outcome.GetProperty("phase").GetString());
            var took = outcome.GetProperty("ended_at").GetDateTimeOffset() - outcome.GetProperty("started_at").GetDateTimeOffset();
            Assert.True(took > ShortTimeout, $"the prepare took {took}, longer than the {ShortTimeout} response timeout");
            Assert.Equal(HttpStatusCode.OK, held.StatusCode);
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }
}
