using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace StreamInfer.LoadGen;

/// <summary>
/// An HTTP client of the run (<c>--url http://host:port/predict</c>): <c>depth</c> slots, each POSTing the same
/// <c>infer</c> body /predict takes and awaiting the response, over its own keep-alive connections. A 200 is a
/// <c>result</c>; anything else counts under the error's <c>code</c> (or the status). Latency: send to the end of the
/// response body.
/// </summary>
internal sealed class HttpConnection : ILoadConnection
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");

    private readonly RequestTemplate _template;
    private readonly int _depth;
    private readonly double _slotIntervalTicks;
    private readonly HttpClient _http;
    private readonly Lock _statsGate = new();
    private Uri _url = null!;
    private long _measureStart;
    private long _measureEnd;
    private long _sent;
    private long _nextId;
    private Task _slots = Task.CompletedTask;

    public HttpConnection(RequestTemplate template, int depth, TimeSpan slotInterval = default)
    {
        _template = template;
        _depth = depth;
        _slotIntervalTicks = slotInterval.TotalSeconds * Stopwatch.Frequency;
        Stats = new ConnectionStats(Math.Min(Math.Max(depth, 1) * 1024, 1 << 20));
        _http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = Math.Max(depth, 1), PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
        {
            Timeout = Options.AnswerTimeout,
        };

        // Each client is its own caller, with its own session (rate limit, backlog), as each WebSocket connection is.
        _http.DefaultRequestHeaders.Add("X-Client-Id", $"loadgen-{Guid.NewGuid():N}");
    }

    public ConnectionStats Stats { get; }

    public long Sent => Interlocked.Read(ref _sent);

    public Task Slots => _slots;

    public async Task ConnectAsync(Uri url, TimeSpan timeout)
    {
        _url = url;
        // Opens the first keep-alive connection and checks the server is there.
        using var cts = new CancellationTokenSource(timeout);
        using var health = await _http.GetAsync(new Uri(url, "/healthz"), cts.Token);
        health.EnsureSuccessStatusCode();
    }

    public void Start(long measureStart, long measureEnd)
    {
        _measureStart = measureStart;
        _measureEnd = measureEnd;
        _slots = Task.WhenAll(Enumerable.Range(0, _depth).Select(_ => Task.Run(RunSlotAsync)));
    }

    // The HTTP client's own timeout (Options.AnswerTimeout) ends an overdue request; it then counts as unanswered.
    public void ExpireOverdue(long now, TimeSpan timeout)
    {
    }

    public int Abandon() => 0;

    public Task CloseAsync() => Task.CompletedTask;

    public void Dispose() => _http.Dispose();

    private async Task RunSlotAsync()
    {
        var buffer = new byte[_template.MaxLength];
        var pacer = new SlotPacer(_slotIntervalTicks);
        while (Stopwatch.GetTimestamp() < _measureEnd)
        {
            await pacer.WaitTurnAsync();

            var length = _template.Write(buffer, Interlocked.Increment(ref _nextId));
            using var content = new ByteArrayContent(buffer, 0, length);
            content.Headers.ContentType = Json;
            var sentAt = Stopwatch.GetTimestamp();
            Interlocked.Increment(ref _sent);
            string outcome;
            var retryAfterMs = 0;
            try
            {
                using var response = await _http.PostAsync(_url, content);
                var body = await response.Content.ReadAsByteArrayAsync();
                outcome = response.StatusCode == HttpStatusCode.OK ? "result" : ErrorCode(body) ?? ((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture);
                if (response.Headers.RetryAfter?.Delta is { } delta)
                {
                    retryAfterMs = (int)delta.TotalMilliseconds;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                // Never answered (timed out, or the connection broke).
                Interlocked.Increment(ref Stats.Abandoned);
                continue;
            }

            var now = Stopwatch.GetTimestamp();
            lock (_statsGate)
            {
                Stats.Answered++;
                if (sentAt >= _measureStart && sentAt < _measureEnd)
                {
                    Stats.Latencies.Add((now - sentAt) * 1000.0 / Stopwatch.Frequency);
                    Stats.SentAtSeconds.Add((float)((sentAt - _measureStart) / (double)Stopwatch.Frequency));
                    ConnectionStats.Increment(Stats.Outcomes, outcome);
                }
            }

            if (retryAfterMs > 0)
            {
                await Task.Delay(retryAfterMs);
            }
        }
    }

    private static string? ErrorCode(byte[] body)
    {
        try
        {
            using var json = JsonDocument.Parse(body);
            return json.RootElement.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.Object && error.TryGetProperty("code", out var code)
                ? code.GetString()
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
