using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Deploy;

/// <summary>
/// The deploy/ scripts' cluster with a real redis-server, 3 silos and 2 frontends as separate processes, under load
/// through both frontends, while parts of it are killed. Slow: CI runs them, the default run does not.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ClusterFaultTests(Xunit.Abstractions.ITestOutputHelper log)
{
    private const int TimeoutMs = 10_000;

    // The echo model's simulated device: 20 ms per batch of up to 8, so a silo holds requests long enough to lose some.
    // The frontends give up on an answer half a second past its deadline (default 5 s), so that a lost answer would show
    // as deadline_exceeded well within the test; none may be lost (D9).
    private static readonly Dictionary<string, string> SlowEcho = new()
    {
        ["StreamInfer__Models__echo__FixedDelay"] = "00:00:00.020",
        ["StreamInfer__Models__echo__MaxBatchSize"] = "8",
        ["StreamInfer__Frontend__WatchdogGrace"] = "00:00:00.500",
        ["Logging__Console__TimestampFormat"] = "HH:mm:ss.fff ",
    };

    [Fact]
    public async Task Cluster_SiloKilledUnderLoad_ItsRequestsEndWithErrorsInTimeTheRestServeAndItRejoins()
    {
        await using var cluster = await ClusterProcess.StartAsync(3, 2, SlowEcho);
        await using var load = await WsLoad.StartAsync([cluster.FrontendWs(1), cluster.FrontendWs(2)], clientsPerFrontend: 12, TimeoutMs);

        var before = await load.CountOverAsync(TimeSpan.FromSeconds(3));
        cluster.Kill("silo-2");
        var killedAt = load.Elapsed;
        await Eventually.UntilAsync(() => cluster.ActiveSilosAsync(1), n => n == 2, TimeSpan.FromSeconds(30), "membership declares silo-2 dead");
        var declaredAfter = load.Elapsed - killedAt;
        // Wait until a one-second window runs at a third of the earlier rate, then measure.
        await Eventually.UntilAsync(() => load.CountOverAsync(TimeSpan.FromSeconds(1)), w => w.Ok * 3 > before.Ok / 3, TimeSpan.FromSeconds(30), "throughput recovers on the silos left");
        var recoveredAfter = load.Elapsed - killedAt;
        var after = await load.CountOverAsync(TimeSpan.FromSeconds(3));

        var (code, output) = await cluster.RestartSiloAsync(2);
        Assert.True(code == 0, output);
        await Eventually.UntilAsync(() => cluster.ActiveSilosAsync(2), n => n == 3, TimeSpan.FromSeconds(60), "the restarted silo-2 rejoins");
        var rejoined = await load.CountOverAsync(TimeSpan.FromSeconds(2));
        var outcomes = await load.StopAsync(TimeSpan.FromMilliseconds(TimeoutMs + 8_000));

        var summary = $"logs in {cluster.RunDir}; before {before.Ok} ok/{before.Errors} err, after {after.Ok}/{after.Errors}, rejoined {rejoined.Ok}/{rejoined.Errors}; dead declared after {declaredAfter.TotalSeconds:F1} s, recovered after {recoveredAfter.TotalSeconds:F1} s; errors: {string.Join(", ", outcomes.Where(o => o.Code != "result").GroupBy(o => o.Code).Select(g => $"{g.Key} x{g.Count()}"))}";
        log.WriteLine(summary);
        Assert.True(outcomes.All(o => o.Ended), "a request never ended: " + summary);
        // No request waits past its deadline, the frontend's half-second grace and its watchdog's 1 s sweep (plus 1 s for a
        // busy machine): those the dead silo held end once membership says so, with model_unavailable (or internal).
        Assert.True(outcomes.Max(o => o.Took) < TimeSpan.FromMilliseconds(TimeoutMs + 2_500), $"slowest took {outcomes.Max(o => o.Took)}; {summary}");
        // Only the dead silo's requests fail; every result computed on the silos left reaches its client, including those
        // of clients whose frontend reached the cluster through the dead silo's gateway (no deadline_exceeded).
        Assert.All(outcomes.Where(o => o.Code != "result"), o => Assert.Contains(o.Code, new[] { "model_unavailable", "internal" }));
        Assert.True(before.Ok > 100, summary);
        // Throughput recovers on the two silos left (each was a third of the device capacity), then with silo-2 back.
        Assert.True(after.Ok > before.Ok / 3, summary);
        Assert.True(rejoined.Ok > 0 && rejoined.Errors == 0, summary);
    }

    [Fact]
    public async Task Cluster_SiloStoppedUnderLoad_DrainsAndNothingIsLost()
    {
        await using var cluster = await ClusterProcess.StartAsync(3, 2, SlowEcho);
        await using var load = await WsLoad.StartAsync([cluster.FrontendWs(1), cluster.FrontendWs(2)], clientsPerFrontend: 12, TimeoutMs);

        // A cluster frontend (an Orleans client) serves the dashboard of the whole cluster.
        using var http = new HttpClient { BaseAddress = cluster.Frontend(2), Timeout = TimeSpan.FromSeconds(10) };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", cluster.AdminKey);
        await Eventually.UntilAsync(
            async () => System.Text.Json.JsonDocument.Parse(await http.GetStringAsync("/dashboard/DashboardCounters")).RootElement.GetProperty("totalActiveHostCount").GetInt32(),
            n => n == 3,
            TimeSpan.FromSeconds(30),
            "frontend-2's dashboard shows the three silos");

        var before = await load.CountOverAsync(TimeSpan.FromSeconds(3));
        var stoppedAt = load.Elapsed;
        var took = await cluster.TerminateAsync("silo-3", TimeSpan.FromSeconds(40));
        var during = await load.CountOverAsync(TimeSpan.FromSeconds(1));
        await Eventually.UntilAsync(() => cluster.ActiveSilosAsync(1), n => n == 2, TimeSpan.FromSeconds(30), "membership drops the stopped silo-3");
        var after = await load.CountOverAsync(TimeSpan.FromSeconds(3));
        var outcomes = await load.StopAsync(TimeSpan.FromMilliseconds(TimeoutMs + 8_000));

        var summary = $"logs in {cluster.RunDir}; before {before.Ok}/{before.Errors}, first second after SIGTERM {during.Ok}/{during.Errors}, after {after.Ok}/{after.Errors}; silo-3 exited {took.TotalSeconds:F1} s after SIGTERM; errors: {string.Join(", ", outcomes.Where(o => o.Code != "result").GroupBy(o => o.Code).Select(g => $"{g.Key} x{g.Count()}"))}";
        log.WriteLine(summary);
        Assert.Contains("Drained 1 batchers for shutdown", cluster.Log("silo-3"), StringComparison.Ordinal);
        // A standalone silo serves its grid metrics: the echo requests its batcher answered.
        var siloMetrics = await http.GetStringAsync(cluster.SiloMetrics(1));
        Assert.Contains(siloMetrics.Split('\n'), l => l.StartsWith("streaminfer_requests_total{", StringComparison.Ordinal) && l.Contains("model=\"echo\"", StringComparison.Ordinal) && l.Contains("code=\"ok\"", StringComparison.Ordinal));
        Assert.True(outcomes.All(o => o.Ended), "a request never ended: " + summary);
        // A drained silo finishes what it runs and ends only what was queued, with a retryable model_unavailable (at most
        // what was in flight: one request per client); nothing is lost and nothing waits for a deadline.
        Assert.All(outcomes.Where(o => o.Code != "result"), o => Assert.Equal("model_unavailable", o.Code));
        Assert.True(outcomes.Count(o => o.Code != "result") <= 24, summary);
        Assert.True(outcomes.Where(o => o.SentAt > stoppedAt).Max(o => o.Took) < TimeSpan.FromSeconds(5), summary);
        Assert.True(after.Ok > before.Ok / 3 && after.Errors == 0, summary);
    }

    [Fact]
    public async Task Cluster_FrontendKilledThenRedisDown_ClientsMoveToTheOtherFrontendAndServingNeverStops()
    {
        await using var cluster = await ClusterProcess.StartAsync(2, 2, SlowEcho);
        await using var load = await WsLoad.StartAsync([cluster.FrontendWs(1), cluster.FrontendWs(2)], clientsPerFrontend: 8, TimeoutMs);
        var before = await load.CountOverAsync(TimeSpan.FromSeconds(2));

        // A frontend dies: its clients reconnect to the other one and go on.
        cluster.Kill("frontend-2");
        var killedAt = load.Elapsed;
        await Eventually.UntilAsync(() => Task.FromResult(load.ClientsServedSince(killedAt)), n => n == 16, TimeSpan.FromSeconds(30), "every client is served again after frontend-2 died");

        // Redis goes away for a few seconds: the running cluster keeps serving from what it holds.
        cluster.Kill("redis");
        var outage = await load.CountOverAsync(TimeSpan.FromSeconds(3));
        var (code, output) = await cluster.RestartRedisAsync();
        Assert.True(code == 0, output);

        // Membership works again once it is back: a new silo joins.
        (code, output) = await cluster.RestartSiloAsync(3);
        Assert.True(code == 0, output);
        await Eventually.UntilAsync(() => cluster.ActiveSilosAsync(1), n => n == 3, TimeSpan.FromSeconds(60), "silo-3 joins through the restarted Redis");
        // The joining silo takes sessions and its share of the work: wait until deliveries flow at the earlier rate.
        await Eventually.UntilAsync(() => load.CountOverAsync(TimeSpan.FromSeconds(1)), w => w.Ok * 3 > before.Ok / 2, TimeSpan.FromSeconds(30), "deliveries flow again after silo-3 joined");
        var after = await load.CountOverAsync(TimeSpan.FromSeconds(2));
        var outcomes = await load.StopAsync(TimeSpan.FromMilliseconds(TimeoutMs + 8_000));

        var summary = $"logs in {cluster.RunDir}; before {before.Ok}/{before.Errors}, Redis down {outage.Ok}/{outage.Errors}, after {after.Ok}/{after.Errors}; outcomes: {string.Join(", ", outcomes.GroupBy(o => o.Code).Select(g => $"{g.Key} x{g.Count()}"))}";
        log.WriteLine(summary);
        Assert.True(outcomes.All(o => o.Ended), "a request never ended: " + summary);
        // Only requests in flight on the killed frontend's connections are cut; nothing is lost when a silo joins.
        Assert.All(outcomes.Where(o => o.Code != "result"), o => Assert.Contains(o.Code, new[] { "disconnected", "model_unavailable", "internal" }));
        Assert.True(outage.Ok > 0 && outage.Errors == 0, summary);
        Assert.True(after.Ok > 0, summary);
    }
}
