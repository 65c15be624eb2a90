using System.Globalization;
using System.Net;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend;

/// <summary>
/// /metrics (Prometheus text) and /metrics/json move as a known workload says. The meter is the process's: other grids
/// of the test run record on it too, so each test reads its own model's series, before and after.
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
    public async Task Metrics_OneGeneration_TimeToFirstTokenAndStepsRecorded()
    {
        var ttftBefore = await PrometheusValueAsync("streaminfer_time_to_first_token_seconds_count", ("model", "tiny-lm-1"));
        var stepsBefore = await PrometheusValueAsync("streaminfer_inter_token_latency_seconds_count", ("model", "tiny-lm-1"));

        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);
        await ws.SendAsync(new { type = "infer", id = "g", model = "tiny-lm-1", prompt = "Once", max_tokens = 5, temperature = 0, stream = false });
        var done = await ws.NextAsync();
        Assert.Equal("done", done.GetProperty("type").GetString());
        var generated = done.GetProperty("usage").GetProperty("completion_tokens").GetInt32();

        Assert.Equal(ttftBefore + 1, await PrometheusValueAsync("streaminfer_time_to_first_token_seconds_count", ("model", "tiny-lm-1")));
        // One step per token for a sequence decoding alone (its prefill step gives the first).
        Assert.Equal(stepsBefore + generated, await PrometheusValueAsync("streaminfer_inter_token_latency_seconds_count", ("model", "tiny-lm-1")));
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
