using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Operations;

/// <summary>
/// Hot-swap through the model-version grain and <c>/api/models</c>: versions prepared beside the serving one, committed
/// at once, work in flight finishing on its own version; failed prepares abort and the old version keeps serving.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class ModelRolloutTests(FrontendFixture fixture)
{
    [Fact]
    public async Task Rollout_UnderLoad_NoFailuresEveryAnswerFromOneVersionAndNewRequestsGetTheNew()
    {
        var answers = new ConcurrentBag<(int Sent, string Version, float X, float Y, bool AfterCommit)>();
        var failures = new ConcurrentBag<string>();
        var committed = 0;
        using var stop = new CancellationTokenSource();
        async Task ClientAsync(int c)
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                var after = Volatile.Read(ref committed) == 1;
                float x = (c * 1000) + i;
                using var response = await fixture.Http.PostAsJsonAsync("/predict", new { model = "swap-load", inputs = new { x = new { dtype = "float32", shape = new[] { 1, 2 }, data = new[] { x, x + 0.5f } } } });
                var body = await response.Content.ReadAsStringAsync();
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    failures.Add(body);
                    continue;
                }

                var root = JsonDocument.Parse(body).RootElement;
                var y = root.GetProperty("outputs").GetProperty("y").GetProperty("data")[0].GetSingle();
                answers.Add((i, root.GetProperty("model_version").GetString()!, x, y, after));
            }
        }

        var clients = Enumerable.Range(0, 8).Select(c => Task.Run(() => ClientAsync(c))).ToList();
        await Eventually.UntilAsync(() => Task.FromResult(answers.Count), n => n >= 100, what: "load runs on version 1");

        using var rollout = await fixture.Http.PostAsJsonAsync("/api/models/swap-load/rollout", new { version = "2" });
        var outcome = await rollout.Content.ReadFromJsonAsync<JsonElement>();
        Volatile.Write(ref committed, 1);
        var before = answers.Count;
        await Eventually.UntilAsync(() => Task.FromResult(answers.Count), n => n >= before + 100, what: "load runs on version 2");
        await stop.CancelAsync();
        await Task.WhenAll(clients);

        Assert.Equal(HttpStatusCode.OK, rollout.StatusCode);
        Assert.Equal("committed", outcome.GetProperty("phase").GetString());
        Assert.Empty(failures);
        Assert.All(answers, a => Assert.Equal(a.X * (a.Version == "1" ? 1f : 2f), a.Y));
        Assert.All(answers, a => Assert.Contains(a.Version, new[] { "1", "2" }));
        Assert.Contains(answers, a => a.Version == "1");
        Assert.All(answers.Where(a => a.AfterCommit), a => Assert.Equal("2", a.Version));

        var status = await fixture.Http.GetFromJsonAsync<JsonElement>("/api/models/swap-load");
        Assert.Equal("2", status.GetProperty("serving_version").GetString());
        Assert.Equal("1", status.GetProperty("previous_version").GetString());
        var silo = Assert.Single(status.GetProperty("silos").EnumerateArray());
        Assert.Equal("2", silo.GetProperty("serving_version").GetString());
        Assert.Equal(0, silo.GetProperty("prepared_versions").GetArrayLength());
        // Drained: the batcher holds the new version only.
        var batcher = Assert.Single(silo.GetProperty("batchers").EnumerateArray());
        Assert.Equal(["2"], batcher.GetProperty("versions").EnumerateArray().Select(v => v.GetString()));
    }

    [Theory]
    [InlineData("3", "ONNX Runtime cannot load it")]
    [InlineData("4", "incompatibly")]
    [InlineData("9", "missing")]
    public async Task Rollout_BrokenVersion_AbortedWithTheReasonAndTheOldVersionServes(string version, string reason)
    {
        using var rollout = await fixture.Http.PostAsJsonAsync("/api/models/swap-bad/rollout", new { version });
        var outcome = await rollout.Content.ReadFromJsonAsync<JsonElement>();
        var answer = await PredictAsync("swap-bad", 3f);

        Assert.Equal(HttpStatusCode.UnprocessableEntity, rollout.StatusCode);
        Assert.Equal("aborted", outcome.GetProperty("phase").GetString());
        var failure = Assert.Single(outcome.GetProperty("failures").EnumerateArray());
        Assert.Contains(reason, failure.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal(("1", 3f), answer);
        var status = await fixture.Http.GetFromJsonAsync<JsonElement>("/api/models/swap-bad");
        Assert.Equal("aborted", status.GetProperty("last_rollout").GetProperty("phase").GetString());
        Assert.Equal(0, status.GetProperty("silos")[0].GetProperty("prepared_versions").GetArrayLength());
    }

    [Fact]
    public async Task Rollback_AfterARollout_ServesThePreviousVersionAgain()
    {
        using var forward = await fixture.Http.PostAsJsonAsync("/api/models/swap-back/rollout", new { version = "2" });
        var onTwo = await PredictAsync("swap-back", 5f);
        using var back = await fixture.Http.PostAsync("/api/models/swap-back/rollback", JsonContent.Create(new { }));
        var onOne = await PredictAsync("swap-back", 5f);

        Assert.Equal(HttpStatusCode.OK, forward.StatusCode);
        Assert.Equal(("2", 10f), onTwo);
        Assert.Equal(HttpStatusCode.OK, back.StatusCode);
        Assert.True((await back.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("rollback").GetBoolean());
        Assert.Equal(("1", 5f), onOne);
    }

    [Fact]
    public async Task Rollout_TwoAtOnce_OneCommitsTheOtherIsRefused()
    {
        var both = await Task.WhenAll(
            fixture.Client.GetGrain<IModelVersionGrain>("swap-race").RolloutAsync("2"),
            fixture.Client.GetGrain<IModelVersionGrain>("swap-race").RolloutAsync("2"));

        Assert.Single(both, r => r.Phase == RolloutPhases.Committed);
        var refused = Assert.Single(both, r => r.Phase == RolloutPhases.Refused);
        Assert.False(string.IsNullOrWhiteSpace(refused.Failures[0].Reason));
    }

    [Fact]
    public async Task Endpoints_UnknownModelAndBadBody_404And400()
    {
        using var unknown = await fixture.Http.PostAsJsonAsync("/api/models/no-such/rollout", new { version = "2" });
        using var noVersion = await fixture.Http.PostAsJsonAsync("/api/models/swap-race/rollout", new { other = 1 });

        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, noVersion.StatusCode);
    }

    /// <summary>A stream that started on version 1 ends on version 1, whatever commits meanwhile; the next starts on 2.</summary>
    [Fact]
    public async Task Rollout_DuringAStream_TheStreamStaysOnItsVersionNewStreamsGetTheNew()
    {
        await using var ws = await WsTestClient.ConnectAsync(fixture.WsUri);
        await ws.SendAsync(new { type = "infer", id = "long", model = "tiny-swap", prompt = "during", max_tokens = 400, temperature = 0 });
        Assert.Equal("token", (await ws.NextAsync()).GetProperty("type").GetString());

        var rollout = await fixture.Client.GetGrain<IModelVersionGrain>("tiny-swap").RolloutAsync("2");
        await ws.SendAsync(new { type = "infer", id = "next", model = "tiny-swap", prompt = "after", max_tokens = 2, temperature = 0 });
        var ends = new Dictionary<string, JsonElement>();
        while (ends.Count < 2)
        {
            var frame = await ws.NextAsync(TimeSpan.FromSeconds(60));
            if (frame.GetProperty("type").GetString() == "done")
            {
                ends[frame.GetProperty("id").GetString()!] = frame;
            }
        }

        Assert.Equal(RolloutPhases.Committed, rollout.Phase);
        Assert.Equal("1", ends["long"].GetProperty("model_version").GetString());
        Assert.Equal("length", ends["long"].GetProperty("finish_reason").GetString());
        Assert.Equal("2", ends["next"].GetProperty("model_version").GetString());
    }

    private Task<(string Version, float Y)> PredictAsync(string model, float x) => ScaleModel.PredictAsync(fixture.Http, model, x);
}
