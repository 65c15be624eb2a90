using System.Collections.Concurrent;
using System.Diagnostics;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>
/// Closed-loop WebSocket clients of a <see cref="ClusterProcess"/>, one echo request in flight each, every outcome
/// recorded with its times; on a dropped connection a client reconnects to the next frontend.
/// </summary>
public sealed class WsLoad : IAsyncDisposable
{
    private readonly Uri[] _frontends;
    private readonly int _timeoutMs;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly ConcurrentQueue<Outcome> _outcomes = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _clients = [];
    private readonly ConcurrentDictionary<string, TimeSpan> _lastOk = new();

    private WsLoad(Uri[] frontends, int timeoutMs)
    {
        _frontends = frontends;
        _timeoutMs = timeoutMs;
    }

    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>Every outcome so far (pending ones included).</summary>
    public IReadOnlyCollection<Outcome> Outcomes => [.. _outcomes];

    /// <summary>Starts <paramref name="clientsPerFrontend"/> clients on each frontend, each request with the deadline <paramref name="timeoutMs"/>.</summary>
    public static async Task<WsLoad> StartAsync(Uri[] frontends, int clientsPerFrontend, int timeoutMs)
    {
        var load = new WsLoad(frontends, timeoutMs);
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

    /// <summary>
    /// Results per whole second from <paramref name="from"/>, for <paramref name="seconds"/> seconds, of the clients
    /// <paramref name="of"/> picks (all when null).
    /// </summary>
    public int[] ResultsPerSecond(TimeSpan from, int seconds, Func<string, bool>? of = null)
    {
        var counts = new int[seconds];
        foreach (var o in _outcomes.Where(o => o.Code == "result" && o.EndedAt >= from && (of is null || of(o.Client))))
        {
            var second = (int)(o.EndedAt - from).TotalSeconds;
            if (second < seconds)
            {
                counts[second]++;
            }
        }

        return counts;
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
                    await client.SendInferAsync(id, timeoutMs: _timeoutMs);
                }
                catch (Exception ex) when (ex is System.Net.WebSockets.WebSocketException or InvalidOperationException or ObjectDisposedException)
                {
                    // The frontend went away before the request was sent: reconnect to the next one.
                    await client.DisposeAsync();
                    frontend = (frontend + 1) % _frontends.Length;
                    client = await WsTestClient.ConnectAsync(_frontends[frontend]);
                    continue;
                }

                var outcome = new Outcome(name, sentAt);
                _outcomes.Enqueue(outcome);
                try
                {
                    while (true)
                    {
                        var frame = await client.NextAsync(TimeSpan.FromMilliseconds(_timeoutMs + 8_000));
                        var type = frame.GetProperty("type").GetString();
                        if (frame.TryGetProperty("id", out var got) && got.GetString() == id && type is "result" or "error")
                        {
                            var retryAfter = frame.TryGetProperty("retry_after_ms", out var retry) ? retry.GetDouble() : (double?)null;
                            outcome.End(type == "result" ? "result" : frame.GetProperty("code").GetString()!, _clock.Elapsed, retryAfter);
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
                    outcome.End("disconnected", _clock.Elapsed, null);
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

    /// <summary>One request as its client saw it.</summary>
    public sealed class Outcome(string client, TimeSpan sentAt)
    {
        /// <summary>The client that sent it.</summary>
        public string Client { get; } = client;

        public TimeSpan SentAt { get; } = sentAt;

        public TimeSpan EndedAt { get; private set; }

        /// <summary><c>result</c>, an error's code, <c>disconnected</c>, or <c>pending</c>.</summary>
        public string Code { get; private set; } = "pending";

        /// <summary>An error's <c>retry_after_ms</c>, when it had one.</summary>
        public double? RetryAfterMs { get; private set; }

        public bool Ended { get; private set; }

        public TimeSpan Took => (Ended ? EndedAt : TimeSpan.MaxValue) - SentAt;

        public void End(string code, TimeSpan at, double? retryAfterMs)
        {
            Code = code;
            EndedAt = at;
            RetryAfterMs = retryAfterMs;
            Ended = true;
        }
    }
}
