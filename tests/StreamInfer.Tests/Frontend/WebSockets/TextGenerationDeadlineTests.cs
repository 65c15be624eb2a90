using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>
/// Deadlines of generated text, on a grid of its own whose grains measure time on a fake clock: a deadline passes when
/// the test moves the clock, never because the machine was slow. The frontend's own watchdog runs on real time, so the
/// requests carry deadlines far longer than a test takes.
/// </summary>
public sealed class TextGenerationDeadlineTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(5);
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private WebApplication _app = null!;
    private Uri _ws = null!;

    public async Task InitializeAsync()
    {
        var settings = FrontendFixture.IsolatedSettings(tinyLm: true);
        // tiny-lm-1: tiny-lm decoding one sequence at a time, so a second one queues behind the first.
        TinyLm.Write(Path.Combine(settings["StreamInfer:Repository:Path"]!, "tiny-lm-1"), new TinyLmOptions { MaxBatchSize = 1 });
        Uri http;
        (_app, http) = await FrontendFixture.StartGridAsync(settings, b => b.Services.AddKeyedSingleton<TimeProvider>(StreamInferClock.Key, _time));
        _ws = new UriBuilder(http) { Scheme = "ws", Path = "/ws" }.Uri;
    }

    public async Task DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task Infer_DeadlinePassesWhileGenerating_DoneWithFinishReasonDeadline()
    {
        await using var ws = await WsTestClient.ConnectAsync(_ws);
        await ws.SendAsync(new { type = "infer", id = "d", model = "tiny-lm", prompt = "slow", max_tokens = 1000, temperature = 0, timeout_ms = (int)Deadline.TotalMilliseconds });
        var first = await NextForAsync(ws, "d");
        Assert.Equal("token", first.GetProperty("type").GetString());

        _time.Advance(Deadline);
        var (tokens, done) = await TextGenerationTests.ReadGenerationAsync(ws, "d");

        Assert.Equal("deadline", done.GetProperty("finish_reason").GetString());
        // Every token counted was sent before the end (an end published ahead of the last step's tokens would lose one).
        Assert.Equal(tokens.Count + 1, done.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.InRange(tokens.Count + 1, 1, 999);
    }

    [Fact]
    public async Task Deadline_RunningSequence_EndsItAndTheQueuedOneStarts()
    {
        await using var first = await WsTestClient.ConnectAsync(_ws);
        await using var second = await WsTestClient.ConnectAsync(_ws);
        await first.SendAsync(new { type = "infer", id = "a", model = "tiny-lm-1", prompt = "long", max_tokens = 1000, temperature = 0, timeout_ms = (int)Deadline.TotalMilliseconds });
        Assert.Equal("token", (await NextForAsync(first, "a")).GetProperty("type").GetString());
        // The second one gets a deadline of its own, counted from its admission: moving the clock past the first's
        // deadline leaves it a minute.
        _time.Advance(TimeSpan.FromMinutes(1));
        await second.SendAsync(new { type = "infer", id = "b", model = "tiny-lm-1", prompt = "next", max_tokens = 3, temperature = 0, timeout_ms = (int)Deadline.TotalMilliseconds });

        _time.Advance(Deadline - TimeSpan.FromMinutes(1));
        var (_, ended) = await TextGenerationTests.ReadGenerationAsync(first, "a");
        var (tokens, done) = await TextGenerationTests.ReadGenerationAsync(second, "b");

        Assert.Equal("deadline", ended.GetProperty("finish_reason").GetString());
        Assert.Equal(3, tokens.Count);
        Assert.Equal("length", done.GetProperty("finish_reason").GetString());
    }

    private static async Task<JsonElement> NextForAsync(WsTestClient ws, string id)
    {
        while (true)
        {
            var frame = await ws.NextAsync(TimeSpan.FromSeconds(30));
            if (frame.GetProperty("type").GetString() != "warning" && frame.GetProperty("id").GetString() == id)
            {
                return frame;
            }
        }
    }
}
