using System.Collections.Concurrent;
using System.Diagnostics;
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
        await using var load = await Load.StartAsync([cluster.FrontendWs(1), cluster.FrontendWs(2)], clientsPerFrontend: 12);

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
        await using var load = await Load.StartAsync([cluster.FrontendWs(1), cluster.FrontendWs(2)], clientsPerFrontend: 12);

        // A cluster frontend (an Orleans client) serves the dashboard of the whole cluster.
        using var http = new HttpClient { BaseAddress = cluster.Frontend(2), Timeout = TimeSpan.FromSeconds(10) };
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
        await using var load = await Load.StartAsync([cluster.FrontendWs(1), cluster.FrontendWs(2)], clientsPerFrontend: 8);
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

    /// <summary>Closed-loop WebSocket clients, one request in flight each; on a dropped connection a client reconnects to the next frontend.</summary>
    private sealed class Load : IAsyncDisposable
    {
        private readonly Uri[] _frontends;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly ConcurrentQueue<Outcome> _outcomes = new();
        private readonly CancellationTokenSource _stop = new();
        private readonly List<Task> _clients = [];
        private readonly ConcurrentDictionary<string, TimeSpan> _lastOk = new();

        private Load(Uri[] frontends) => _frontends = frontends;

        public TimeSpan Elapsed => _clock.Elapsed;

        public static async Task<Load> StartAsync(Uri[] frontends, int clientsPerFrontend)
        {
            var load = new Load(frontends);
            for (var f = 0; f < frontends.Length; f++)
            {
                for (var c = 0; c < clientsPerFrontend; c++)
                {
                    var client = await WsTestClient.ConnectAsync(frontends[f]);
                    var (frontend, name) = (f, $"c{f}-{c}");
                    load._clients.Add(Task.Run(() => load.RunAsync(client, frontend, name)));
                }
            }

            return load;
        }

        /// <summary>How many clients had a result since <paramref name="since"/>.</summary>
        public int ClientsServedSince(TimeSpan since) => _lastOk.Values.Count(t => t > since);

        /// <summary>Requests that ended in the next <paramref name="window"/>, by outcome.</summary>
        public async Task<(int Ok, int Errors)> CountOverAsync(TimeSpan window)
        {
            var from = _clock.Elapsed;
            await Task.Delay(window);
            var to = _clock.Elapsed;
            var ended = _outcomes.Where(o => o.EndedAt >= from && o.EndedAt < to).ToList();
            return (ended.Count(o => o.Code == "result"), ended.Count(o => o.Code != "result"));
        }

        /// <summary>Stops sending and waits (at most <paramref name="drain"/>) for what is in flight.</summary>
        public async Task<List<Outcome>> StopAsync(TimeSpan drain)
        {
            _stop.Cancel();
            await Task.WhenAll(_clients).WaitAsync(drain + TimeSpan.FromSeconds(5));
            return [.. _outcomes];
        }

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            await Task.WhenAny(Task.WhenAll(_clients), Task.Delay(TimeSpan.FromSeconds(30)));
            _stop.Dispose();
        }

        private async Task RunAsync(WsTestClient client, int frontend, string name)
        {
            var n = 0;
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    var id = $"{name}-{n++}";
                    var sentAt = _clock.Elapsed;
                    try
                    {
                        await client.SendInferAsync(id, timeoutMs: TimeoutMs);
                    }
                    catch (Exception ex) when (ex is System.Net.WebSockets.WebSocketException or InvalidOperationException or ObjectDisposedException)
                    {
                        // The frontend went away before the request was sent: reconnect to the next one.
                        await client.DisposeAsync();
                        frontend = (frontend + 1) % _frontends.Length;
                        client = await WsTestClient.ConnectAsync(_frontends[frontend]);
                        continue;
                    }

                    var outcome = new Outcome(sentAt);
                    _outcomes.Enqueue(outcome);
                    try
                    {
                        while (true)
                        {
                            var frame = await client.NextAsync(TimeSpan.FromMilliseconds(TimeoutMs + 8_000));
                            var type = frame.GetProperty("type").GetString();
                            if (frame.TryGetProperty("id", out var got) && got.GetString() == id && type is "result" or "error")
                            {
                                outcome.End(type == "result" ? "result" : frame.GetProperty("code").GetString()!, _clock.Elapsed);
                                if (type == "result")
                                {
                                    _lastOk[name] = _clock.Elapsed;
                                }

                                break;
                            }
                        }
                    }
                    catch (TimeoutException)
                    {
                        // Never answered: the outcome stays pending, and the test says so.
                        return;
                    }
                    catch (InvalidOperationException)
                    {
                        // The connection closed under the request (its frontend died): the client saw it end.
                        outcome.End("disconnected", _clock.Elapsed);
                        await client.DisposeAsync();
                        frontend = (frontend + 1) % _frontends.Length;
                        client = await WsTestClient.ConnectAsync(_frontends[frontend]);
                    }
                }
            }
            finally
            {
                await client.DisposeAsync();
            }
        }
    }

    private sealed class Outcome(TimeSpan sentAt)
    {
        public TimeSpan SentAt { get; } = sentAt;

        public TimeSpan EndedAt { get; private set; }

        public string Code { get; private set; } = "pending";

        public bool Ended { get; private set; }

        public TimeSpan Took => (Ended ? EndedAt : TimeSpan.MaxValue) - SentAt;

        public void End(string code, TimeSpan at)
        {
            Code = code;
            EndedAt = at;
            Ended = true;
        }
    }
}
