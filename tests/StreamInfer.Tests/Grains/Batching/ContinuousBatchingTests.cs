using StreamInfer.Grains.Batching;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Batching;

/// <summary>Continuous batching on its own, on tiny-lm: a fake clock, a device thread, no cluster. After the first
/// dispatch only the scheduler's step reader calls it, as the grain would.</summary>
public sealed class ContinuousBatchingTests : IClassFixture<OnnxModelsFixture>
{
    private readonly OnnxModelsFixture _models;

    public ContinuousBatchingTests(OnnxModelsFixture models) => _models = models;

    [Fact]
    public async Task Dispatch_MoreRequestsThanSlots_OneJoinsWhenASequenceLeaves()
    {
        using var kit = new SchedulerTestKit(_models.Decoder(TinyLm.Name), new ModelOptions { MaxBatchSize = 2 });
        var generation = new GenerationOptions(MaxTokens: 3, Temperature: 0);
        foreach (var id in (string[])["a", "b", "c"])
        {
            Assert.Null(kit.Submit(id, prompt: $"hello {id}", generation: generation, dispatch: false));
        }

        kit.Dispatch();
        var outcomes = await kit.NextAsync(9);

        // Three tokens each (the last with its end); c's first only after a or b ended and freed its slot.
        Assert.All(outcomes.GroupBy(o => o.Delivery.RequestId), g => Assert.Equal(3, g.Count(o => o.Delivery.Token is not null)));
        var firstEnd = outcomes.FindIndex(o => o.Delivery.IsEnd);
        Assert.True(outcomes.FindIndex(o => o.Delivery.RequestId == "c") > firstEnd);
        Assert.All(outcomes.Where(o => o.Delivery.IsEnd), o => Assert.Equal(FinishReasons.Length, o.Delivery.Done?.FinishReason));
        Assert.True(kit.Scheduler.Stats.RecentSizes.Max() <= 2);
        await kit.Scheduler.WhenIdleAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, kit.Scheduler.Active);
        Assert.Equal(3, kit.Scheduler.Stats.ItemsRun);
    }

    [Fact]
    public async Task Step_DeadlinePassesWhileGenerating_EndsWithDeadlineAfterItsTokens()
    {
        using var kit = new SchedulerTestKit(_models.Decoder(TinyLm.Name), new ModelOptions { MaxBatchSize = 2 });
        var advanced = 0;

        // The device runs ahead of the grain by at most a step or two: the deadline passes as the first token is
        // handed over, long before the hundredth could be decoded, however the test thread is scheduled.
        kit.OnOutcome = _ =>
        {
            if (Interlocked.Exchange(ref advanced, 1) == 0)
            {
                kit.Time.Advance(TimeSpan.FromSeconds(1));
            }
        };
        Assert.Null(kit.Submit("long", timeout: TimeSpan.FromSeconds(1), prompt: "once upon a time", generation: new GenerationOptions(MaxTokens: 100, Temperature: 0)));

        var first = Assert.Single(await kit.NextAsync(1));
        Assert.NotNull(first.Delivery.Token);

        RequestOutcome last;
        var tokens = 1;
        do
        {
            last = Assert.Single(await kit.NextAsync(1));
            tokens += last.Delivery.Token is null ? 0 : 1;
        }
        while (!last.Delivery.IsEnd);

        Assert.Equal(FinishReasons.Deadline, last.Delivery.Done?.FinishReason);
        Assert.True(tokens < 100);
    }
}
