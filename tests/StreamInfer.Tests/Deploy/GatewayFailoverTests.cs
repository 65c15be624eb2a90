using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Deploy;

/// <summary>
/// A frontend (an Orleans client) loses the silo whose gateway it first connected through, under load: it never finds
/// itself without a gateway, and every request ends within seconds, what the dead silo held with a retryable
/// <c>model_unavailable</c>. The per-second rates through the death are reported, not asserted: that no second falls
/// below half the rate before it is not met yet (docs/decisions.md D15). Slow: CI runs it.
/// </summary>
[Trait("Category", "Slow")]
public sealed class GatewayFailoverTests(Xunit.Abstractions.ITestOutputHelper log)
{
    // The frontend's own default deadline and watchdog grace (30 s + 5 s): a request left to the watchdog shows as one
    // that took far longer than the 10 s asserted.
    private const int TimeoutMs = 30_000;

    private static readonly Dictionary<string, string> FastEcho = new()
    {
        ["StreamInfer__Models__echo__FixedDelay"] = "00:00:00.005",
        ["StreamInfer__Models__echo__MaxBatchSize"] = "8",
        ["Logging__Console__TimestampFormat"] = "HH:mm:ss.fff ",
    };

    [Fact]
    public async Task Cluster_FrontendsFirstGatewaySiloKilledUnderLoad_GatewaysLeftServeAndEveryRequestEndsInSeconds()
    {
        // The frontend starts while silo-1 is the only one, so silo-1's is the one gateway it found at start; the
        // other two join after it.
        await using var cluster = await ClusterProcess.StartAsync(1, 1, FastEcho);
        foreach (var silo in new[] { 2, 3 })
        {
            var (code, output) = await cluster.RestartSiloAsync(silo);
            Assert.True(code == 0, output);
        }

        await Eventually.UntilAsync(() => cluster.ActiveSilosAsync(1), n => n == 3, TimeSpan.FromSeconds(60), "silo-2 and silo-3 join");
        await using var load = await WsLoad.StartAsync([cluster.FrontendWs(1)], clientsPerFrontend: 32, TimeoutMs);
        // The joining silos have loaded echo and their batchers serve requests before the rate is measured.
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        await Eventually.UntilAsync(
            async () => (await Task.WhenAll(new[] { 1, 2, 3 }.Select(i => EchoAnsweredAsync(http, cluster.SiloMetrics(i))))).Min(),
            n => n >= 200,
            TimeSpan.FromSeconds(30),
            "each silo's batcher answers echo requests");
        await Eventually.UntilAsync(() => load.CountOverAsync(TimeSpan.FromSeconds(1)), w => w.Ok > 100 && w.Errors == 0, TimeSpan.FromSeconds(30), "the load runs without errors");
        var before = await load.CountOverAsync(TimeSpan.FromSeconds(3));

        cluster.Kill("silo-1");
        var killedAt = load.Elapsed;
        await Eventually.UntilAsync(() => cluster.ActiveSilosAsync(1), n => n == 2, TimeSpan.FromSeconds(30), "membership declares silo-1 dead");
        var declaredAt = load.Elapsed;
        await Task.Delay(TimeSpan.FromSeconds(10) - (declaredAt - killedAt) + TimeSpan.FromSeconds(1));
        var perSecond = load.ResultsPerSecond(killedAt, 10);
        var outcomes = await load.StopAsync(TimeSpan.FromMilliseconds(TimeoutMs + 8_000));

        var failed = outcomes.Where(o => o.Code != "result").ToList();
        // The clients of the silos left: none of their requests met the dead silo (no error).
        var survivors = outcomes.Select(o => o.Client).Except(failed.Select(o => o.Client)).ToHashSet();
        var survivorsBefore = load.ResultsPerSecond(killedAt - TimeSpan.FromSeconds(3), 3, survivors.Contains);
        var survivorsAfter = load.ResultsPerSecond(killedAt, 10, survivors.Contains);
        var slowest = outcomes.Where(o => o.Ended).Max(o => o.EndedAt - (o.SentAt > killedAt ? o.SentAt : killedAt));
        var summary = $"logs in {cluster.RunDir}; before {before.Ok / 3}/s ({before.Errors} errors in 3 s); results per second from the kill: {string.Join(" ", perSecond)}; {survivors.Count} clients never met the dead silo: {string.Join(" ", survivorsBefore)} per second before the kill, {string.Join(" ", survivorsAfter)} after; dead declared (seen at the frontend) after {(declaredAt - killedAt).TotalSeconds:F1} s; slowest end after the kill {slowest.TotalSeconds:F1} s; errors: {string.Join(", ", failed.GroupBy(o => o.Code).Select(g => $"{g.Key} x{g.Count()} (last {g.Max(o => o.EndedAt - killedAt).TotalSeconds:F1} s after the kill, {g.Count(o => o.RetryAfterMs is null)} without retry_after_ms)"))}";
        log.WriteLine(summary);

        Assert.True(before.Ok > 300, summary);
        // The frontend learnt the gateways of the silos that joined after it started: losing silo-1's left it others.
        Assert.False(cluster.LogContains("frontend-1", "All known gateways have been marked dead"), summary);
        Assert.True(outcomes.All(o => o.Ended), "a request never ended: " + summary);
        // Every request ends within 10 s of the kill, never at the watchdog; those silo-1 held with model_unavailable.
        // (Whether each carries retry_after_ms is in the summary: one run of many saw three without it, path not found.)
        Assert.True(slowest < TimeSpan.FromSeconds(10), summary);
        Assert.All(failed, o => Assert.Equal("model_unavailable", o.Code));
    }

    /// <summary>The echo requests a silo's batchers answered, from its Prometheus endpoint (0 when it cannot be read).</summary>
    private static async Task<double> EchoAnsweredAsync(HttpClient http, Uri metrics)
    {
        try
        {
            return (await http.GetStringAsync(metrics)).Split('\n')
                .Where(l => l.StartsWith("streaminfer_requests_total{", StringComparison.Ordinal) && l.Contains("model=\"echo\"", StringComparison.Ordinal) && l.Contains("code=\"ok\"", StringComparison.Ordinal))
                .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return 0;
        }
    }
}
