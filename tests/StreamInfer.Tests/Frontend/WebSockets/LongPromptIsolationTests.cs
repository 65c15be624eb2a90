using System.Diagnostics;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>
/// Prompts just under the frontend's prompt cap, sent without pause by other clients to tiny-lm, do not hold up another
/// client's short generation on the same model: each long prompt is read, tokenized and refused (it is far past the
/// model's context) off the batcher's scheduler, so the short generation's first token comes about as soon as it does
/// with no long prompts around.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class LongPromptIsolationTests(FrontendFixture fixture)
{
    private const int Floods = 2;
    private const int Samples = 8;

    [Fact]
    public async Task ShortGeneration_WhileOthersSendPromptsAtTheCap_FirstTokenWithinABoundOfAQuietRun()
    {
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);
        await FirstTokenAsync(client, "warm");
        var quiet = await MedianFirstTokenAsync(client, "quiet");

        using var stop = new CancellationTokenSource();
        var refused = new int[Floods];
        var floods = Enumerable.Range(0, Floods).Select(i => FloodAsync(i, refused, stop.Token)).ToArray();
        TimeSpan loaded;
        int during;
        try
        {
            // The measurement starts once every flood client has had a long prompt refused: all of them are running.
            await Eventually.UntilAsync(() => Task.FromResult(Enumerable.Range(0, Floods).All(i => Volatile.Read(ref refused[i]) > 0)), all => all, what: "every flood client's first long prompt is answered");
            var before = Answered(refused);
            loaded = await MedianFirstTokenAsync(client, "loaded");
            during = Answered(refused) - before;
        }
        finally
        {
            // The fixture is shared: the floods never outlive the test, whatever failed.
            await stop.CancelAsync();
            await Task.WhenAll(floods);
        }

        Assert.True(during >= Floods, $"only {during} long prompts were answered while the short generations ran");
        // A scheduler that tokenized each long prompt itself would put every short admission and decode step behind
        // the queue of them; running beside them, the first token stays within a small multiple of the quiet one.
        // The absolute margin absorbs a loaded machine's scheduling; a blocked scheduler costs far more.
        var bound = (quiet * 5) + TimeSpan.FromSeconds(1);
        Assert.True(loaded <= bound, $"first token {loaded.TotalMilliseconds:F1} ms under long prompts, {quiet.TotalMilliseconds:F1} ms quiet (bound {bound.TotalMilliseconds:F1} ms); {during} long prompts answered meanwhile");
    }

    private static int Answered(int[] refused) => Enumerable.Range(0, refused.Length).Sum(i => Volatile.Read(ref refused[i]));

    private static async Task<TimeSpan> MedianFirstTokenAsync(WsTestClient client, string prefix)
    {
        var times = new List<TimeSpan>();
        for (var i = 0; i < Samples; i++)
        {
            times.Add(await FirstTokenAsync(client, $"{prefix}-{i}"));
        }

        times.Sort();
        return times[Samples / 2];
    }

    /// <summary>Sends a short generation; returns the time to its first token, and reads it to its end.</summary>
    private static async Task<TimeSpan> FirstTokenAsync(WsTestClient client, string id)
    {
        var started = Stopwatch.GetTimestamp();
        await client.SendAsync(new { type = "infer", id, model = "tiny-lm", prompt = "Once upon", max_tokens = 4, temperature = 0 });
        TimeSpan? elapsed = null;
        while (true)
        {
            var frame = await client.NextAsync(TimeSpan.FromSeconds(30));
            var type = frame.GetProperty("type").GetString();
            if (type == "warning")
            {
                continue;
            }

            Assert.Equal(id, frame.GetProperty("id").GetString());
            if (type == "done")
            {
                break;
            }

            Assert.Equal("token", type);
            elapsed ??= Stopwatch.GetElapsedTime(started);
        }

        return elapsed ?? throw new InvalidOperationException($"generation {id} ended without a token");
    }

    /// <summary>One client sending prompts just under the frontend's prompt and frame caps, each as soon as the last is
    /// answered (tiny-lm refuses each: it is far past the model's context).</summary>
    private async Task FloodAsync(int index, int[] refused, CancellationToken stop)
    {
        await using var flood = await WsTestClient.ConnectAsync(fixture.WsUri);
        var prompt = new string('x', FrontendFixture.MaxFrameBytes - 256);
        for (var i = 0; !stop.IsCancellationRequested; i++)
        {
            await flood.SendAsync(new { type = "infer", id = $"long-{i}", model = "tiny-lm", prompt, max_tokens = 1 });
            var answer = await flood.NextAsync(TimeSpan.FromSeconds(30));
            Assert.Equal("error", answer.GetProperty("type").GetString());
            Assert.Equal("invalid_input", answer.GetProperty("code").GetString());
            Interlocked.Increment(ref refused[index]);
        }
    }
}
