using System.Text;
using System.Text.Json;
using StreamInfer.Grains.Models.Stateful;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>
/// A sequence's window end to end, on the built-in vad-lite (a window of 4 over <c>output</c>, on at 0.5, off below
/// 0.35): over a WebSocket every result carries the window and each event frame comes just before its result; over
/// KServe HTTP the window and the event ride in the answer's parameters.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class SequenceWindowFrameTests(FrontendFixture fixture)
{
    /// <summary>Two silent chunks, six loud ones, fourteen silent ones.</summary>
    private static readonly float[] Amplitudes = [.. Enumerable.Repeat(0f, 2).Concat(Enumerable.Repeat(0.3f, 6)).Concat(Enumerable.Repeat(0f, 14))];

    [Fact]
    public async Task Frames_LoudThenSilence_ResultsCarryTheWindowAndEventsPrecedeTheirResults()
    {
        var (windows, events) = Expected();
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);
        for (var i = 0; i < Amplitudes.Length; i++)
        {
            await client.SendAsync(new Dictionary<string, object>
            {
                ["type"] = "infer",
                ["id"] = $"c{i}",
                ["model"] = VadLite.Name,
                ["inputs"] = Inputs(Amplitudes[i]),
                ["sequence_id"] = "mic-1",
                ["sequence_start"] = i == 0,
                ["sequence_end"] = i == Amplitudes.Length - 1,
            });
        }

        var frames = await client.NextAsync(Amplitudes.Length + events.Count);

        var seen = new List<(string Event, int Index)>();
        var results = 0;
        for (var f = 0; f < frames.Count; f++)
        {
            var frame = frames[f];
            if (frame.GetProperty("type").GetString() == "event")
            {
                // The event names its request, and that request's result is the very next frame.
                var index = frame.GetProperty("index").GetInt32();
                Assert.Equal($"c{index}", frame.GetProperty("id").GetString());
                Assert.Equal("mic-1", frame.GetProperty("sequence_id").GetString());
                Assert.Equal("output", frame.GetProperty("output").GetString());
                Assert.Equal(windows[index].Mean, frame.GetProperty("value").GetDouble(), 1e-12);
                Assert.Equal($"c{index}", frames[f + 1].GetProperty("id").GetString());
                Assert.Equal(frame.GetProperty("event").GetString(), frames[f + 1].GetProperty("window").GetProperty("event").GetString());
                seen.Add((frame.GetProperty("event").GetString()!, index));
                continue;
            }

            Assert.Equal("result", frame.GetProperty("type").GetString());
            Assert.Equal($"c{results}", frame.GetProperty("id").GetString());
            var window = frame.GetProperty("window");
            Assert.Equal("output", window.GetProperty("output").GetString());
            Assert.Equal(results, window.GetProperty("index").GetInt32());
            Assert.Equal(windows[results].Count, window.GetProperty("count").GetInt32());
            Assert.Equal(windows[results].Mean, window.GetProperty("mean").GetDouble(), 1e-12);
            Assert.Equal(windows[results].Max, window.GetProperty("max").GetDouble());
            Assert.Equal(windows[results].Output, frame.GetProperty("outputs").GetProperty("output").GetProperty("data")[0].GetSingle());
            results++;
        }

        Assert.Equal(events, seen);
        Assert.Equal(["on", "off"], seen.Select(e => e.Event));
    }

    [Fact]
    public async Task KServeInfer_LoudThenSilence_WindowAndEventInTheParameters()
    {
        var (windows, events) = Expected();
        var seen = new List<(string Event, int Index)>();
        for (var i = 0; i < Amplitudes.Length; i++)
        {
            var body = JsonSerializer.Serialize(new
            {
                inputs = new object[]
                {
                    new { name = "input", datatype = "FP32", shape = new[] { 1, VadLite.ChunkSamples }, data = Samples(Amplitudes[i]) },
                    new { name = "sr", datatype = "INT64", shape = Array.Empty<int>(), data = new[] { VadLite.ReferenceSampleRate } },
                },
                parameters = new { sequence_id = "http-mic", sequence_start = i == 0, sequence_end = i == Amplitudes.Length - 1 },
            });
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await fixture.Http.PostAsync($"/v2/models/{VadLite.Name}/infer", content);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, text);

            using var json = JsonDocument.Parse(text);
            var parameters = json.RootElement.GetProperty("parameters");
            Assert.Equal("output", parameters.GetProperty("window_output").GetString());
            Assert.Equal(i, parameters.GetProperty("window_index").GetInt32());
            Assert.Equal(windows[i].Count, parameters.GetProperty("window_count").GetInt32());
            Assert.Equal(windows[i].Mean, parameters.GetProperty("window_mean").GetDouble(), 1e-12);
            Assert.Equal(windows[i].Max, parameters.GetProperty("window_max").GetDouble());
            if (parameters.TryGetProperty("sequence_event", out var raised))
            {
                seen.Add((raised.GetString()!, i));
            }
        }

        Assert.Equal(events, seen);
    }

    /// <summary>Each chunk's output and window by the model's exact reference, and the events the shipped thresholds raise.</summary>
    private static (List<(float Output, int Count, double Mean, double Max)> Windows, List<(string Event, int Index)> Events) Expected()
    {
        var outputs = VadLiteReference.Run(Amplitudes.Select(Samples));
        var windows = new List<(float, int, double, double)>();
        var events = new List<(string, int)>();
        var on = false;
        for (var i = 0; i < outputs.Length; i++)
        {
            var values = outputs.Take(i + 1).TakeLast(VadLite.WindowSize).Select(o => (double)o).ToArray();
            var mean = values.Average();
            windows.Add((outputs[i], values.Length, mean, values.Max()));
            if (on != (on ? mean >= VadLite.WindowOff : mean >= VadLite.WindowOn))
            {
                on = !on;
                events.Add((on ? "on" : "off", i));
            }
        }

        return (windows, events);
    }

    private static object Inputs(float amplitude) => new Dictionary<string, object>
    {
        ["input"] = new { dtype = "float32", shape = new[] { 1, VadLite.ChunkSamples }, data = Samples(amplitude) },
        ["sr"] = new { dtype = "int64", shape = Array.Empty<int>(), data = new[] { VadLite.ReferenceSampleRate } },
    };

    /// <summary>A triangle wave of <paramref name="amplitude"/>, one 32 ms chunk at 16 kHz.</summary>
    private static float[] Samples(float amplitude)
        => [.. Enumerable.Range(0, VadLite.ChunkSamples).Select(i => amplitude * ((i % 32) < 16 ? (i % 32) / 8f - 1f : 3f - (i % 32) / 8f))];
}
