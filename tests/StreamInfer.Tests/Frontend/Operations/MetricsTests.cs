using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Operations;

/// <summary>
/// /metrics (Prometheus text) and /metrics/json move as a known workload says. The fixture's grid is shared by the
/// collection, so each test reads its own model's series, before and after.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class MetricsTests(FrontendFixture fixture)
{
    [Fact]
    public async Task Metrics_EightRequestsInFullBatchesOfFour_CountersHistogramAndQueueDepthMove()
    {
        var requestsBefore = await PrometheusValueAsync("streaminfer_requests_total", ("model", "metered"), ("code", "ok"));
        var batchesBefore = await PrometheusValueAsync("streaminfer_batch_size_count", ("model", "metered"));
        var rowsBefore = await PrometheusValueAsync("streaminfer_batch_size_sum", ("model", "metered"));
        var refusedBefore = await PrometheusValueAsync("streaminfer_refused_total", ("model", "metered"), ("code", "invalid_input"));

        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);
        for (var i = 0; i < 3; i++)
        {
            await ws.SendInferAsync($"m{i}", "metered");
        }

        // Three of four wait for their batch-mate: the queue-depth gauge says so.
        await Eventually.UntilAsync(() => PrometheusValueAsync("streaminfer_queue_depth", ("model", "metered")), v => v == 3, TimeSpan.FromSeconds(10), "queue depth 3");

        for (var i = 3; i < 8; i++)
        {
            await ws.SendInferAsync($"m{i}", "metered");
        }

        await ws.SendAsync(new { type = "infer", id = "bad", model = "metered", priority = 7, inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 1 } } } });
        var frames = await ws.NextAsync(9);
        Assert.Equal(8, frames.Count(f => f.GetProperty("type").GetString() == "result"));

        Assert.Equal(requestsBefore + 8, await PrometheusValueAsync("streaminfer_requests_total", ("model", "metered"), ("code", "ok")));
        Assert.Equal(batchesBefore + 2, await PrometheusValueAsync("streaminfer_batch_size_count", ("model", "metered")));
        Assert.Equal(rowsBefore + 8, await PrometheusValueAsync("streaminfer_batch_size_sum", ("model", "metered")));
        Assert.Equal(refusedBefore + 1, await PrometheusValueAsync("streaminfer_refused_total", ("model", "metered"), ("code", "invalid_input")));
        Assert.Equal(0, await PrometheusValueAsync("streaminfer_queue_depth", ("model", "metered")));

        // The JSON summary says the same.
        using var json = JsonDocument.Parse(await fixture.Http.GetStringAsync("/metrics/json"));
        var ok = json.RootElement.GetProperty("streaminfer.requests").GetProperty("points").EnumerateArray()
            .Single(p => p.GetProperty("labels").GetProperty("model").GetString() == "metered" && p.GetProperty("labels").GetProperty("code").GetString() == "ok");
        Assert.Equal(requestsBefore + 8, ok.GetProperty("value").GetDouble());
        var queueTime = json.RootElement.GetProperty("streaminfer.request.queue_time").GetProperty("points").EnumerateArray()
            .Single(p => p.GetProperty("labels").GetProperty("model").GetString() == "metered");
        Assert.True(queueTime.GetProperty("count").GetInt64() >= 8);
        Assert.Equal("s", json.RootElement.GetProperty("streaminfer.request.queue_time").GetProperty("unit").GetString());
    }

    [Fact]
    public async Task Metrics_QueuedRequestCancelled_CountedOnceAsCancelledAndLeavesTheQueue()
    {
        var before = await PrometheusValueAsync("streaminfer_requests_total", ("model", "hold"), ("code", "cancelled"));
        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);
        await ws.SendInferAsync("c1", "hold");
        await Eventually.UntilAsync(() => PrometheusValueAsync("streaminfer_queue_depth", ("model", "hold")), v => v == 1, TimeSpan.FromSeconds(10), "the request waits in hold's queue");

        await ws.SendAsync(new { type = "cancel", id = "c1" });
        var frame = await ws.NextAsync();
        Assert.Equal("cancelled", frame.GetProperty("code").GetString());
        await Eventually.UntilAsync(() => PrometheusValueAsync("streaminfer_queue_depth", ("model", "hold")), v => v == 0, TimeSpan.FromSeconds(10), "the queue empties");
        Assert.Equal(before + 1, await PrometheusValueAsync("streaminfer_requests_total", ("model", "hold"), ("code", "cancelled")));
    }

    [Fact]
    public async Task Metrics_OneGeneration_TimeToFirstTokenStepsAndReturnPathRecorded()
    {
        var ttftBefore = await PrometheusValueAsync("streaminfer_time_to_first_token_seconds_count", ("model", "tiny-lm-1"));
        var stepsBefore = await PrometheusValueAsync("streaminfer_inter_token_latency_seconds_count", ("model", "tiny-lm-1"));
        var gapsBefore = await PrometheusValueAsync("streaminfer_decode_step_gap_seconds_count", ("model", "tiny-lm-1"));
        var handoffsBefore = await PrometheusValueAsync("streaminfer_decode_handoff_seconds_count", ("model", "tiny-lm-1"));
        var framesBefore = await PrometheusValueAsync("streaminfer_delivery_latency_seconds_count", ("path", "ws"));

        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);
        await ws.SendAsync(new { type = "infer", id = "g", model = "tiny-lm-1", prompt = "Once", max_tokens = 5, temperature = 0, stream = true });
        var tokenFrames = 0;
        JsonElement done;
        while ((done = await ws.NextAsync()).GetProperty("type").GetString() == "token")
        {
            tokenFrames++;
        }

        Assert.Equal("done", done.GetProperty("type").GetString());
        var generated = done.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        Assert.True(generated >= 2, $"the test needs at least two steps; tiny-lm-1 generated {generated}");

        Assert.Equal(ttftBefore + 1, await PrometheusValueAsync("streaminfer_time_to_first_token_seconds_count", ("model", "tiny-lm-1")));
        // The prefill step gives the first token; each later step ends one step period after the one before.
        Assert.Equal(stepsBefore + generated - 1, await PrometheusValueAsync("streaminfer_inter_token_latency_seconds_count", ("model", "tiny-lm-1")));
        Assert.Equal(gapsBefore + generated - 1, await PrometheusValueAsync("streaminfer_decode_step_gap_seconds_count", ("model", "tiny-lm-1")));
        // Every step, the prefill too, was handed from the device thread to the batcher once.
        Assert.Equal(handoffsBefore + generated, await PrometheusValueAsync("streaminfer_decode_handoff_seconds_count", ("model", "tiny-lm-1")));
        // Every frame the batcher produced for this request, tokens and done, was timed once it was written.
        await Eventually.UntilAsync(
            () => PrometheusValueAsync("streaminfer_delivery_latency_seconds_count", ("path", "ws")),
            v => v >= framesBefore + tokenFrames + 1,
            TimeSpan.FromSeconds(10),
            "the token and done frames are counted by the return path's histogram");
    }

    [Fact]
    public async Task Metrics_StreamedCompletion_EveryTextChunkTimedOnTheEventStreamPath()
    {
        var before = await PrometheusValueAsync("streaminfer_delivery_latency_seconds_count", ("path", "sse"));
        using var content = JsonContent.Create(new { model = "tiny-lm-1", prompt = "Once", max_tokens = 6, temperature = 0, stream = true });
        using var response = await fixture.Http.PostAsync("/v1/completions", content);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadAsStringAsync();
        var textChunks = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => e.Trim())
            .Where(e => e.StartsWith("data: {", StringComparison.Ordinal))
            .Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices"))
            .Count(c => c.GetArrayLength() > 0 && c[0].GetProperty("finish_reason").ValueKind == JsonValueKind.Null && c[0].GetProperty("text").GetString() is { Length: > 0 });
        Assert.True(textChunks > 0, "the completion streamed no text");

        // A token's chunk is timed after its write and flush, before the next is read: all are counted by now.
        Assert.True(
            await PrometheusValueAsync("streaminfer_delivery_latency_seconds_count", ("path", "sse")) >= before + textChunks,
            "every token chunk is counted by the return path's histogram");
    }

    /// <summary>The value of the series of <paramref name="name"/> whose labels include <paramref name="labels"/>, summed
    /// over the rest (version, device); 0 when there is none yet.</summary>
    private async Task<double> PrometheusValueAsync(string name, params (string Key, string Value)[] labels)
    {
        using var response = await fixture.Http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        var total = 0.0;
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith(name + "{", StringComparison.Ordinal) && labels.All(l => line.Contains($"{l.Key}=\"{l.Value}\"", StringComparison.Ordinal)))
            {
                var value = line[(line.LastIndexOf('}') + 1)..].Trim().Split(' ')[0];
                total += double.Parse(value, CultureInfo.InvariantCulture);
            }
        }

        return total;
    }
}
