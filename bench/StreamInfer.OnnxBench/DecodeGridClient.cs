using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace StreamInfer.OnnxBench;

/// <summary>
/// Streams from a decoder model over the grid's WebSocket protocol: C connections, each sending one prompt request at a
/// time (closed loop), for the bare decode bench's workload. Measures generated tokens/s, time to first token (send to
/// first token frame) and inter-token latency (gap between one request's consecutive token frames). Kept apart from
/// StreamInfer.LoadGen, whose slots end at one result frame and which has no notion of streamed tokens.
/// </summary>
internal sealed class DecodeGridClient
{
    public required Uri Url { get; init; }

    public string Model { get; init; } = "tiny-lm";

    public int Connections { get; init; } = 64;

    public int PromptTokens { get; init; } = 16;

    public int MaxTokens { get; init; } = 128;

    public double Seconds { get; init; } = 10;

    public double WarmupSeconds { get; init; } = 2;

    /// <summary>Connects, runs the warm-up and the measured window, and writes the result line.</summary>
    public async Task<int> RunAsync(TextWriter output, TextWriter progress)
    {
        if (Url.Scheme is "http" or "https")
        {
            return await RunSseAsync(output, progress);
        }

        var sockets = new List<ClientWebSocket>(Connections);
        try
        {
            for (var i = 0; i < Connections; i++)
            {
                var ws = new ClientWebSocket();
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await ws.ConnectAsync(Url, cts.Token);
                sockets.Add(ws);
            }

            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{Connections} connections open; warm-up {WarmupSeconds:F0} s, then {Seconds:F0} s measured"));
            var now = Stopwatch.GetTimestamp();
            var window = new Window(
                now + (long)(WarmupSeconds * Stopwatch.Frequency),
                now + (long)((WarmupSeconds + Seconds) * Stopwatch.Frequency));
            var server = ServerSideAsync(window, "ws", progress);
            var stats = await Task.WhenAll(sockets.Select((ws, i) => Task.Run(() => StreamAsync(ws, i, window))));
            return Report(stats, await server, output, progress);
        }
        finally
        {
            foreach (var ws in sockets)
            {
                ws.Abort();
                ws.Dispose();
            }
        }
    }

    /// <summary>
    /// The same workload over the OpenAI-compatible API (<c>--url http://HOST:PORT/v1/completions</c>): each client POSTs
    /// <c>stream: true</c> and reads the Server-Sent Events; a chunk is a token, <c>data: [DONE]</c> the end. Each
    /// client has its own HTTP client and <c>X-Client-Id</c>, as each WebSocket connection has its own session.
    /// </summary>
    private async Task<int> RunSseAsync(TextWriter output, TextWriter progress)
    {
        var clients = Enumerable.Range(0, Connections).Select(i =>
        {
            var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
            http.DefaultRequestHeaders.Add("X-Client-Id", string.Create(CultureInfo.InvariantCulture, $"decode-sse-{i}-{Guid.NewGuid():N}"));
            return http;
        }).ToList();
        try
        {
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{Connections} SSE clients; warm-up {WarmupSeconds:F0} s, then {Seconds:F0} s measured"));
            var now = Stopwatch.GetTimestamp();
            var window = new Window(
                now + (long)(WarmupSeconds * Stopwatch.Frequency),
                now + (long)((WarmupSeconds + Seconds) * Stopwatch.Frequency));
            var server = ServerSideAsync(window, "sse", progress);
            var stats = await Task.WhenAll(clients.Select(http => Task.Run(() => StreamSseAsync(http, window))));
            return Report(stats, await server, output, progress);
        }
        finally
        {
            foreach (var http in clients)
            {
                http.Dispose();
            }
        }
    }

    /// <summary>
    /// What the grid measured over the same window, from its <c>/metrics</c>: the device's step period (its inter-token
    /// latency), the device's wait between steps, the hand-off of each step to the batcher's turn, the transit of each
    /// step's delivery batch to the frontend (which includes the hand-off), and the
    /// return path (step end to frame written, for this path), each p50 and p99 in ms.
    /// </summary>
    private async Task<string> ServerSideAsync(Window window, string path, TextWriter progress)
    {
        var metrics = new UriBuilder(Url) { Scheme = Url.Scheme is "wss" or "https" ? "https" : "http", Path = "/metrics", Query = string.Empty }.Uri;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(Math.Max(0, (window.Start - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency)));
            var model = $"model=\"{Model}\"";
            var before = await http.GetStringAsync(metrics);
            await Task.Delay(TimeSpan.FromSeconds(Math.Max(0, (window.End - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency)));
            var after = await http.GetStringAsync(metrics);
            var (steps0, steps1) = (PrometheusHistograms.Parse(before, [ItlMetric, GapMetric], model), PrometheusHistograms.Parse(after, [ItlMetric, GapMetric], model));
            var (frames0, frames1) = (PrometheusHistograms.Parse(before, [DeliveryMetric], $"path=\"{path}\""), PrometheusHistograms.Parse(after, [DeliveryMetric], $"path=\"{path}\""));
            var (batches0, batches1) = (PrometheusHistograms.Parse(before, [TransitMetric]), PrometheusHistograms.Parse(after, [TransitMetric]));
            var (handoffs0, handoffs1) = (PrometheusHistograms.Parse(before, [HandoffMetric], model), PrometheusHistograms.Parse(after, [HandoffMetric], model));
            double Delta(string name, params string[] labels) => PrometheusHistograms.Counter(after, name, labels) - PrometheusHistograms.Counter(before, name, labels);
            // .NET's runtime meter counts each collection once, under the highest generation it collected.
            var gc = string.Create(
                CultureInfo.InvariantCulture,
                $"gc0={Delta(GcMetric, "\"gen0\""):F0} gc1={Delta(GcMetric, "\"gen1\""):F0} gc2={Delta(GcMetric, "\"gen2\""):F0} gc_pause_ms={1000 * Delta(GcPauseMetric):F1} alloc_mb_s={Delta(AllocatedMetric) / 1e6 / Seconds:F1}");
            return string.Create(
                CultureInfo.InvariantCulture,
                $"srv_itl_p50={steps1.PercentileMs(steps0, ItlMetric, 50):F3} srv_itl_p99={steps1.PercentileMs(steps0, ItlMetric, 99):F3} gap_p50={steps1.PercentileMs(steps0, GapMetric, 50):F3} gap_p99={steps1.PercentileMs(steps0, GapMetric, 99):F3} handoff_p50={handoffs1.PercentileMs(handoffs0, HandoffMetric, 50):F3} handoff_p99={handoffs1.PercentileMs(handoffs0, HandoffMetric, 99):F3} transit_p50={batches1.PercentileMs(batches0, TransitMetric, 50):F3} transit_p99={batches1.PercentileMs(batches0, TransitMetric, 99):F3} delivery_p50={frames1.PercentileMs(frames0, DeliveryMetric, 50):F3} delivery_p99={frames1.PercentileMs(frames0, DeliveryMetric, 99):F3} delivered={frames1.Count(frames0, DeliveryMetric):F0} {gc}");
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or FormatException or KeyNotFoundException)
        {
            progress.WriteLine($"the grid's /metrics could not be read: {ex.Message}");
            return "srv_itl_p50=NaN srv_itl_p99=NaN gap_p50=NaN gap_p99=NaN handoff_p50=NaN handoff_p99=NaN transit_p50=NaN transit_p99=NaN delivery_p50=NaN delivery_p99=NaN delivered=0 gc0=NaN gc1=NaN gc2=NaN gc_pause_ms=NaN alloc_mb_s=NaN";
        }
    }

    private const string ItlMetric = "streaminfer_inter_token_latency_seconds";
    private const string GapMetric = "streaminfer_decode_step_gap_seconds";
    private const string DeliveryMetric = "streaminfer_delivery_latency_seconds";
    private const string TransitMetric = "streaminfer_delivery_transit_seconds";
    private const string HandoffMetric = "streaminfer_decode_handoff_seconds";
    private const string GcMetric = "dotnet_gc_collections_total";
    private const string GcPauseMetric = "dotnet_gc_pause_time_seconds_total";
    private const string AllocatedMetric = "dotnet_gc_heap_total_allocated_bytes_total";

    private int Report(ConnectionStats[] stats, string server, TextWriter output, TextWriter progress)
    {
        var tokens = stats.Sum(s => s.Tokens);
        var ttft = stats.SelectMany(s => s.FirstToken).Order().ToList();
        var itl = stats.SelectMany(s => s.Gaps).Order().ToList();
        var done = stats.Sum(s => s.Done);
        var errors = stats.Sum(s => s.Errors);
        output.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"grid: tokens_per_s={tokens / Seconds:F0} requests={done} tokens={tokens} errors={errors} ttft_p50={Percentile(ttft, 50):F3} ttft_p99={Percentile(ttft, 99):F3} itl_p50={Percentile(itl, 50):F3} itl_p99={Percentile(itl, 99):F3} itl_max={(itl.Count > 0 ? itl[^1] : double.NaN):F3} {server}"));
        foreach (var message in stats.Select(s => s.FirstError).OfType<string>().Distinct().Take(3))
        {
            progress.WriteLine("error: " + message);
        }

        if (Environment.GetEnvironmentVariable("STREAMINFER_BENCH_OUT") is { Length: > 0 } folder)
        {
            WriteSeries(Path.Combine(folder, $"loadgen-{DateTime.UtcNow:HHmmss.fff}-{Environment.ProcessId}.json"), stats);
        }

        return errors == 0 && tokens > 0 ? 0 : 1;
    }

    /// <summary>
    /// Under bench/suite.sh: the inter-token gaps by the second of the measured window they ended in, in the load
    /// generator's JSON shape, so that StreamInfer.Plot draws them with the other runs.
    /// </summary>
    private void WriteSeries(string path, ConnectionStats[] stats)
    {
        var seconds = (int)Math.Ceiling(Seconds);
        var buckets = new List<double>[seconds];
        foreach (var s in stats)
        {
            for (var i = 0; i < s.Gaps.Count; i++)
            {
                var second = (int)s.GapAt[i];
                if (second >= 0 && second < seconds)
                {
                    (buckets[second] ??= []).Add(s.Gaps[i]);
                }
            }
        }

        using var file = File.Create(path);
        using var w = new Utf8JsonWriter(file, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("label", string.Create(CultureInfo.InvariantCulture, $"{Model}, {Connections} streams over {(Url.Scheme is "http" or "https" ? "SSE" : "WebSocket")}: inter-token latency"));
        w.WriteString("url", Url.ToString());
        w.WriteString("model", Model);
        w.WriteNumber("connections", Connections);
        w.WriteNumber("depth", 1);
        w.WriteNumber("rate", 0);
        w.WriteStartArray("series");
        for (var second = 0; second < seconds; second++)
        {
            var sorted = (buckets[second] ?? []).Order().ToList();
            w.WriteStartObject();
            w.WriteNumber("second", second);
            w.WriteNumber("requests", sorted.Count);
            w.WriteNumber("p50_ms", sorted.Count == 0 ? 0 : Math.Round(Percentile(sorted, 50), 3));
            w.WriteNumber("p99_ms", sorted.Count == 0 ? 0 : Math.Round(Percentile(sorted, 99), 3));
            w.WriteNumber("max_ms", sorted.Count == 0 ? 0 : Math.Round(sorted[^1], 3));
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private async Task<ConnectionStats> StreamSseAsync(HttpClient http, Window window)
    {
        var stats = new ConnectionStats();
        var prompt = DecodeBench.Prompt(PromptTokens);
        try
        {
            while (Stopwatch.GetTimestamp() < window.End)
            {
                var body = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
                {
                    ["model"] = Model,
                    ["prompt"] = prompt,
                    ["max_tokens"] = MaxTokens,
                    ["temperature"] = 0,
                    ["stream"] = true,
                });
                using var content = new ByteArrayContent(body);
                content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
                var sent = Stopwatch.GetTimestamp();
                var measured = sent >= window.Start && sent < window.End;
                using var request = new HttpRequestMessage(HttpMethod.Post, Url) { Content = content };
                using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                if (!response.IsSuccessStatusCode)
                {
                    stats.Errors++;
                    var text = await response.Content.ReadAsStringAsync();
                    stats.FirstError ??= string.Create(CultureInfo.InvariantCulture, $"{(int)response.StatusCode}: {text}");
                    continue;
                }

                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                long last = 0;
                var ended = false;
                while (await reader.ReadLineAsync() is { } line)
                {
                    if (!line.StartsWith("data: ", StringComparison.Ordinal))
                    {
                        continue;
                    }

                    var at = Stopwatch.GetTimestamp();
                    if (line == "data: [DONE]")
                    {
                        ended = true;
                        if (measured)
                        {
                            stats.Done++;
                        }

                        break;
                    }

                    using var chunk = JsonDocument.Parse(line.AsMemory(6));
                    if (chunk.RootElement.TryGetProperty("error", out var error))
                    {
                        stats.Errors++;
                        stats.FirstError ??= error.ToString();
                        break;
                    }

                    // A chunk with a choice is one token; the last may carry only the finish reason or usage.
                    if (!chunk.RootElement.TryGetProperty("choices", out var choices) || choices.GetArrayLength() == 0
                        || choices[0].GetProperty("text").GetString() is not { Length: > 0 })
                    {
                        continue;
                    }

                    last = stats.Token(window, sent, last, at, measured);
                }

                if (!ended)
                {
                    stats.Errors++;
                    stats.FirstError ??= "the event stream ended without [DONE]";
                }
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException or IOException)
        {
            stats.Errors++;
            stats.FirstError ??= ex.Message;
        }

        return stats;
    }

    private static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    private static double Percentile(List<double> sorted, double p)
    {
        if (sorted.Count == 0)
        {
            return double.NaN;
        }

        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Count);
        return sorted[Math.Clamp(rank, 1, sorted.Count) - 1];
    }

    /// <summary>One connection's loop. Tokens count when their frame arrives inside the window; latencies count for
    /// requests sent inside it, so the warm-up's JIT and pool growth stay out of both.</summary>
    private async Task<ConnectionStats> StreamAsync(ClientWebSocket ws, int connection, Window window)
    {
        var stats = new ConnectionStats();
        var buffer = new ArrayBufferWriter<byte>(4096);
        var prompt = DecodeBench.Prompt(PromptTokens);
        var n = 0;
        try
        {
            while (Stopwatch.GetTimestamp() < window.End)
            {
                var id = string.Create(CultureInfo.InvariantCulture, $"c{connection}-{n++}");
                var request = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
                {
                    ["type"] = "infer",
                    ["id"] = id,
                    ["model"] = Model,
                    ["prompt"] = prompt,
                    ["max_tokens"] = MaxTokens,
                    ["temperature"] = 0,
                });
                var sent = Stopwatch.GetTimestamp();
                await ws.SendAsync(request, WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
                var measured = sent >= window.Start && sent < window.End;
                long last = 0;
                while (true)
                {
                    buffer.ResetWrittenCount();
                    ValueWebSocketReceiveResult r;
                    do
                    {
                        r = await ws.ReceiveAsync(buffer.GetMemory(4096), CancellationToken.None);
                        buffer.Advance(r.Count);
                    }
                    while (!r.EndOfMessage && r.MessageType != WebSocketMessageType.Close);

                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        stats.Errors++;
                        stats.FirstError ??= "the server closed the connection";
                        return stats;
                    }

                    var at = Stopwatch.GetTimestamp();
                    using var frame = JsonDocument.Parse(buffer.WrittenMemory);
                    var type = frame.RootElement.GetProperty("type").GetString();
                    if (type == "token")
                    {
                        last = stats.Token(window, sent, last, at, measured);
                    }
                    else if (type == "done")
                    {
                        if (measured)
                        {
                            stats.Done++;
                        }

                        break;
                    }
                    else if (type == "error")
                    {
                        stats.Errors++;
                        stats.FirstError ??= Encoding.UTF8.GetString(buffer.WrittenSpan);
                        break;
                    }
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or JsonException or KeyNotFoundException)
        {
            stats.Errors++;
            stats.FirstError ??= ex.Message;
        }

        return stats;
    }

    private readonly record struct Window(long Start, long End);

    private sealed class ConnectionStats
    {
        public long Tokens { get; set; }

        public long Done { get; set; }

        public long Errors { get; set; }

        public string? FirstError { get; set; }

        public List<double> FirstToken { get; } = [];

        public List<double> Gaps { get; } = [];

        /// <summary>For each of <see cref="Gaps"/>, when its token arrived: seconds into the measured window.</summary>
        public List<float> GapAt { get; } = [];

        /// <summary>
        /// A token of the request sent at <paramref name="sent"/> arrived at <paramref name="at"/>, the previous one at
        /// <paramref name="last"/> (0 for none): counts it if it arrived inside the window and, for a request sent inside
        /// it, records its time to first token or its gap. Returns <paramref name="at"/>, the new "previous".
        /// </summary>
        public long Token(Window window, long sent, long last, long at, bool measured)
        {
            if (at >= window.Start && at < window.End)
            {
                Tokens++;
            }

            if (measured)
            {
                if (last == 0)
                {
                    FirstToken.Add(Ms(at - sent));
                }
                else
                {
                    Gaps.Add(Ms(at - last));
                    GapAt.Add((float)((at - window.Start) / (double)Stopwatch.Frequency));
                }
            }

            return at;
        }
    }
}
