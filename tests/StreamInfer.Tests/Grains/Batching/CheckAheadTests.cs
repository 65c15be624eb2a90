using StreamInfer.Grains.Batching;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Batching;

/// <summary>
/// A decoder's check (its prompt's tokenizing) runs ahead of the admission, on the thread pool rather than the batcher's
/// scheduler, and the admission takes its verdict when it was made against the serving version.
/// </summary>
public sealed class CheckAheadTests(OnnxModelsFixture models) : IClassFixture<OnnxModelsFixture>
{
    [Fact]
    public async Task CheckAhead_PromptFarPastTheContext_InvalidInputFromTheContextsWorthOfTokens()
    {
        using var kit = new SchedulerTestKit(models.Decoder(TinyLm.Name), new ModelOptions { MaxBatchSize = 2 });
        Assert.True(kit.Scheduler.ChecksOffScheduler);

        var ahead = await kit.Admission.CheckAheadAsync(kit.Lease.Model, Item(kit, "long", new string('x', 8_000_000)));

        Assert.Equal(ErrorCode.InvalidInput, ahead.Check.Error?.Code);
        Assert.Contains("tokens or more", ahead.Check.Error!.Message, StringComparison.Ordinal);
        Assert.Same(kit.Lease.Model, ahead.Model);
    }

    [Fact]
    public async Task Admit_CheckedAheadAgainstTheServingVersion_TakesThatVerdict_ElseChecksAgain()
    {
        using var kit = new SchedulerTestKit(models.Decoder(TinyLm.Name), new ModelOptions { MaxBatchSize = 2 });
        var item = Item(kit, "short", "hello");
        var ahead = await kit.Admission.CheckAheadAsync(kit.Lease.Model, item);
        Assert.Null(ahead.Check.Error);
        var verdict = ahead with { Check = new SchedulerCheck(new InferError(ErrorCode.InvalidInput, "decided ahead"), 0) };

        Assert.Equal("decided ahead", kit.Admission.Admit(item, kit.Lease, kit.Options, out _, verdict)?.Message);

        // Made against another version (a rollout committed meanwhile): the admission checks again itself.
        using var other = new RecordingModel();
        Assert.Null(kit.Admission.Admit(item, kit.Lease, kit.Options, out var stale, verdict with { Model = other }));
        Assert.False(stale);
        Assert.Equal(1, kit.Queue.Count);
    }

    private static BatchItem Item(SchedulerTestKit kit, string id, string prompt)
    {
        var now = kit.Time.GetUtcNow();
        var request = new InferRequest(id, kit.Model.Name, [], prompt, null, "fe", null, new GenerationOptions(MaxTokens: 2, Temperature: 0), new SchedulerTestKit.NoObserver());
        return new BatchItem("client", request, now, now + TimeSpan.FromMinutes(1));
    }
}
