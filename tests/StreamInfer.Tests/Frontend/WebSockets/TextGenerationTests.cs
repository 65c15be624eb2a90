using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using StreamInfer.Tests.Grains.Models.Decoding;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>
/// Text generation over the WebSocket protocol and <c>/predict</c> with the built-in tiny-lm through real ONNX Runtime:
/// token frames then <c>done</c>, generation settings, stop sequences, limits and cancellation (deadlines: <see cref="TextGenerationDeadlineTests"/>).
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class TextGenerationTests(FrontendFixture fixture)
{
    [Fact]
    public async Task Infer_Prompt_StreamsTokensInOrderThenDoneWithUsage()
    {
        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);

        await ws.SendAsync(new { type = "infer", id = "g1", model = "tiny-lm", prompt = "Once upon", max_tokens = 12, temperature = 0 });
        var (tokens, done) = await ReadGenerationAsync(ws, "g1");

        Assert.Equal(12, tokens.Count);
        Assert.Equal(Enumerable.Range(0, 12), tokens.Select(t => t.GetProperty("index").GetInt32()));
        Assert.All(tokens, t => Assert.InRange(t.GetProperty("token_id").GetInt32(), 0, 256));
        Assert.Equal("length", done.GetProperty("finish_reason").GetString());
        var usage = done.GetProperty("usage");
        // tiny-lm's tokenizer is one token per byte (README, the tokenizer row).
        Assert.Equal(Encoding.UTF8.GetByteCount("Once upon"), usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(12, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + 12, usage.GetProperty("total_tokens").GetInt32());
        Assert.Equal("1", done.GetProperty("model_version").GetString());
    }

    [Fact]
    public async Task Infer_GreedyStreamAndNotStreamed_SameText()
    {
        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);

        await ws.SendAsync(new { type = "infer", id = "s", model = "tiny-lm", prompt = "The grid", max_tokens = 20, temperature = 0 });
        var (tokens, _) = await ReadGenerationAsync(ws, "s");
        await ws.SendAsync(new { type = "infer", id = "n", model = "tiny-lm", prompt = "The grid", max_tokens = 20, temperature = 0, stream = false });
        var whole = await ws.NextAsync();

        Assert.Equal("done", whole.GetProperty("type").GetString());
        Assert.Equal(Text(tokens), whole.GetProperty("text").GetString());
    }

    [Fact]
    public async Task Infer_SameSeed_SameText_OtherSeed_DifferentText()
    {
        async Task<string> SampleAsync(long seed)
        {
            using var response = await fixture.Http.PostAsJsonAsync("/predict", new { model = "tiny-lm", prompt = "Seeded", max_tokens = 24, temperature = 1.0, top_p = 0.95, seed });
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("text").GetString()!;
        }

        var first = await SampleAsync(7);
        var again = await SampleAsync(7);
        var other = await SampleAsync(8);

        Assert.Equal(first, again);
        Assert.NotEqual(first, other);
    }

    [Fact]
    public async Task Infer_StopSequence_EndsBeforeItWithFinishReasonStop()
    {
        // Find what the model says greedily, then ask it to stop at a piece of that text.
        var full = await PredictTextAsync(new { model = "tiny-lm", prompt = "Stop here", max_tokens = 30, temperature = 0 });
        var stop = full.Substring(10, 3);
        var expected = full[..full.IndexOf(stop, StringComparison.Ordinal)];

        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);
        await ws.SendAsync(new { type = "infer", id = "st", model = "tiny-lm", prompt = "Stop here", max_tokens = 30, temperature = 0, stop = new[] { stop } });
        var (tokens, done) = await ReadGenerationAsync(ws, "st");

        Assert.Equal("stop", done.GetProperty("finish_reason").GetString());
        var text = Text(tokens) + (done.TryGetProperty("text", out var rest) ? rest.GetString() : string.Empty);
        Assert.Equal(expected, text);
        Assert.DoesNotContain(stop, text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Infer_BadGenerationSettings_InvalidInputAndTheConnectionServesOn()
    {
        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);

        await ws.SendAsync(new { type = "infer", id = "t", model = "tiny-lm", prompt = "x", temperature = 5 });
        var hot = await ws.NextAsync();
        await ws.SendAsync(new { type = "infer", id = "e", model = "tiny-lm", prompt = "" });
        var empty = await ws.NextAsync();
        await ws.SendAsync(new { type = "infer", id = "k", model = "tiny-lm", prompt = "x", max_tokens = "many" });
        var typed = await ws.NextAsync();
        await ws.SendAsync(new { type = "infer", id = "ok", model = "tiny-lm", prompt = "x", max_tokens = 2, temperature = 0 });
        var (_, done) = await ReadGenerationAsync(ws, "ok");

        Assert.Equal(("error", "invalid_input"), (hot.GetProperty("type").GetString(), hot.GetProperty("code").GetString()));
        Assert.Contains("temperature", hot.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal("invalid_input", empty.GetProperty("code").GetString());
        Assert.Equal("invalid_input", typed.GetProperty("code").GetString());
        Assert.Equal("length", done.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Infer_PromptTooLongForTheContext_InvalidInput()
    {
        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);

        await ws.SendAsync(new { type = "infer", id = "long", model = "tiny-lm", prompt = new string('a', 2000) });
        var error = await ws.NextAsync();

        Assert.Equal("invalid_input", error.GetProperty("code").GetString());
        Assert.Contains("1024", error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    /// <summary>
    /// <c>tiny-lm-1</c> decodes one sequence at a time: a second request waits in the queue until the first leaves. A
    /// client's cancel ends the first with <c>cancelled</c> and the second starts.
    /// </summary>
    [Fact]
    public async Task Cancel_RunningSequence_EndsItAndTheQueuedOneStarts()
    {
        await using var first = await WsTestClient.ConnectAsync(fixture.WsUri);
        await using var second = await WsTestClient.ConnectAsync(fixture.WsUri);
        await first.SendAsync(new { type = "infer", id = "a", model = "tiny-lm-1", prompt = "long", max_tokens = 1000, temperature = 0 });
        Assert.Equal("token", (await first.NextAsync()).GetProperty("type").GetString());
        await second.SendAsync(new { type = "infer", id = "b", model = "tiny-lm-1", prompt = "next", max_tokens = 3, temperature = 0 });
        await Eventually.UntilAsync(() => fixture.Batcher("tiny-lm-1").GetStatusAsync(), s => s.Queued == 1, what: "the second request waits for the slot");

        await first.SendAsync(new { type = "cancel", id = "a" });
        var ended = await UntilTypeAsync(first, "done");
        var (tokens, done) = await ReadGenerationAsync(second, "b");

        Assert.Equal("cancelled", ended.GetProperty("finish_reason").GetString());
        Assert.Equal(3, tokens.Count);
        Assert.Equal("length", done.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Disconnect_RunningSequence_FreesTheSlotForTheNext()
    {
        var leaving = await WsTestClient.ConnectAsync(fixture.WsUri);
        await using var staying = await WsTestClient.ConnectAsync(fixture.WsUri);
        await leaving.SendAsync(new { type = "infer", id = "a", model = "tiny-lm-1", prompt = "long", max_tokens = 1000, temperature = 0 });
        Assert.Equal("token", (await leaving.NextAsync()).GetProperty("type").GetString());
        await staying.SendAsync(new { type = "infer", id = "b", model = "tiny-lm-1", prompt = "next", max_tokens = 2, temperature = 0 });
        await Eventually.UntilAsync(() => fixture.Batcher("tiny-lm-1").GetStatusAsync(), s => s.Queued == 1, what: "the second request waits for the slot");

        await leaving.DisposeAsync();
        var (tokens, done) = await ReadGenerationAsync(staying, "b");

        Assert.Equal(2, tokens.Count);
        Assert.Equal("length", done.GetProperty("finish_reason").GetString());
        var status = await Eventually.UntilAsync(() => fixture.Batcher("tiny-lm-1").GetStatusAsync(), s => s.Sequences == 0 && s.Queued == 0, what: "both sequences left");
        Assert.Equal(0, status.Sequences);
    }

    [Fact]
    public async Task Infer_CacheBudgetFull_NextWaitsInQueueThenRuns_TooLargeRefused()
    {
        await using var first = await WsTestClient.ConnectAsync(fixture.WsUri);
        await using var second = await WsTestClient.ConnectAsync(fixture.WsUri);

        await first.SendAsync(new { type = "infer", id = "huge", model = "tiny-kv", prompt = "x", max_tokens = 300 });
        var refused = await first.NextAsync();
        await first.SendAsync(new { type = "infer", id = "a", model = "tiny-kv", prompt = "0123456789", max_tokens = 200, temperature = 0 });
        Assert.Equal("token", (await first.NextAsync()).GetProperty("type").GetString());
        await second.SendAsync(new { type = "infer", id = "b", model = "tiny-kv", prompt = "0123456789", max_tokens = 100, temperature = 0 });
        var waiting = await Eventually.UntilAsync(() => fixture.Batcher("tiny-kv").GetStatusAsync(), s => s.Queued == 1, what: "the second sequence waits for cache");
        var (firstTokens, _) = await ReadGenerationAsync(first, "a");
        var (secondTokens, secondDone) = await ReadGenerationAsync(second, "b");

        Assert.Equal("invalid_input", refused.GetProperty("code").GetString());
        Assert.Contains("MiB", refused.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(1, waiting.Sequences);
        Assert.Equal(199, firstTokens.Count);
        Assert.Equal(100, secondTokens.Count);
        Assert.Equal("length", secondDone.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Predict_Prompt_AnswersTextFinishReasonUsageAndVersion()
    {
        using var response = await fixture.Http.PostAsJsonAsync("/predict", new { id = "p", model = "tiny-lm", prompt = "Hello", max_tokens = 5, temperature = 0 });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var root = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("p", root.GetProperty("id").GetString());
        Assert.Equal("1", root.GetProperty("model_version").GetString());
        Assert.Equal("length", root.GetProperty("finish_reason").GetString());
        Assert.Equal(5, root.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(5, root.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.False(string.IsNullOrEmpty(root.GetProperty("text").GetString()));
    }

    [Fact]
    public async Task Infer_ManyConcurrentGreedyStreams_EachEqualsItsSoloRun()
    {
        var prompts = Enumerable.Range(0, 12).Select(i => new string('x', 1 + (i * 7 % 23)) + $" #{i}").ToArray();
        var alone = new List<string>();
        foreach (var prompt in prompts.Take(3))
        {
            alone.Add(await PredictTextAsync(new { model = "tiny-lm", prompt, max_tokens = 16, temperature = 0 }));
        }

        var together = await Task.WhenAll(prompts.Select(prompt => PredictTextAsync(new { model = "tiny-lm", prompt, max_tokens = 16, temperature = 0 })));

        Assert.Equal(alone, together.Take(3));
        var status = await fixture.Batcher("tiny-lm").GetStatusAsync();
        Assert.Contains(status.RecentBatchSizes, size => size > 1);
    }

    [Fact]
    public async Task Infer_MergedDecoderWithUseCacheBranch_SameTokensAsTheSameWeightsWithout()
    {
        var body = new { prompt = "merged branch", max_tokens = 16, temperature = 0.9, seed = 11 };
        var plain = await PredictTextAsync(new { model = "tiny-lm", body.prompt, body.max_tokens, body.temperature, body.seed });
        var merged = await PredictTextAsync(new { model = "tiny-merged", body.prompt, body.max_tokens, body.temperature, body.seed });

        Assert.Equal(plain, merged);
    }

    [Fact]
    public async Task Infer_DecoderWithBpeTokenizerJson_PromptEncodedByMergesAndTextDecoded()
    {
        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);

        await ws.SendAsync(new { type = "infer", id = "b", model = "tiny-bpe", prompt = "hello world", max_tokens = 24, temperature = 1.0, seed = 5 });
        var (tokens, done) = await ReadGenerationAsync(ws, "b");

        // "hello" and " world" are single merged tokens of the tokenizer.json.
        Assert.Equal(2, done.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(tokens.Count, done.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.All(tokens, t => Assert.InRange(t.GetProperty("token_id").GetInt32(), 0, TinyBpeFiles.EndOfText - 1));
        Assert.DoesNotContain('\uFFFD', Text(tokens.Where(t => t.GetProperty("token_id").GetInt32() is >= 32 and <= 126)));
    }

    private async Task<string> PredictTextAsync(object body)
    {
        using var response = await fixture.Http.PostAsJsonAsync("/predict", body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("text").GetString()!;
    }

    private static string Text(IEnumerable<JsonElement> tokens)
    {
        var text = new StringBuilder();
        foreach (var t in tokens)
        {
            text.Append(t.GetProperty("text").GetString());
        }

        return text.ToString();
    }

    /// <summary>Reads one request's token frames up to its <c>done</c>; fails on anything else for it.</summary>
    /// <summary>Reads <paramref name="id"/>'s token frames up to its <c>done</c>, skipping other requests' frames and warnings.</summary>
    internal static async Task<(List<JsonElement> Tokens, JsonElement Done)> ReadGenerationAsync(WsTestClient ws, string id)
    {
        var tokens = new List<JsonElement>();
        while (true)
        {
            var frame = await ws.NextAsync(TimeSpan.FromSeconds(30));
            var type = frame.GetProperty("type").GetString();
            if (type == "warning" || frame.GetProperty("id").GetString() != id)
            {
                continue;
            }

            switch (type)
            {
                case "token":
                    tokens.Add(frame);
                    break;
                case "done":
                    return (tokens, frame);
                default:
                    throw new InvalidOperationException($"unexpected frame for {id}: {frame}");
            }
        }
    }

    private static async Task<JsonElement> UntilTypeAsync(WsTestClient ws, string type)
    {
        while (true)
        {
            var frame = await ws.NextAsync(TimeSpan.FromSeconds(30));
            if (frame.GetProperty("type").GetString() == type)
            {
                return frame;
            }
        }
    }
}
