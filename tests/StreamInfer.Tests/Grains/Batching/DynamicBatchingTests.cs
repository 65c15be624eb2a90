using StreamInfer.Grains.Options;

namespace StreamInfer.Tests.Grains.Batching;

/// <summary>Dynamic batching on its own: a fake clock, a recording model, no cluster.</summary>
public sealed class DynamicBatchingTests
{
    [Fact]
    public async Task Dispatch_MaxBatchSizeQueued_FlushesWithoutWaiting()
    {
        using var model = new RecordingModel();
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxBatchSize = 4, MaxWait = TimeSpan.FromSeconds(10) });

        for (var i = 0; i < 3; i++)
        {
            Assert.Null(kit.Submit($"a{i}"));
        }

        Assert.Empty(model.Batches);
        Assert.Null(kit.Submit("a3"));

        var outcomes = await kit.NextAsync(4);
        Assert.Equal(["a0", "a1", "a2", "a3"], Assert.Single(model.Batches));
        Assert.All(outcomes, o => Assert.Equal(4, o.Delivery.Result!.Timing.BatchSize));
        Assert.Equal(0, kit.Queue.Count);
    }

    [Fact]
    public async Task Dispatch_FewerThanMaxBatchSize_FlushesWhenMaxWaitPasses()
    {
        using var model = new RecordingModel();
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxBatchSize = 100, MaxWait = TimeSpan.FromMilliseconds(50) });
        var start = kit.Time.GetUtcNow();

        for (var i = 0; i < 3; i++)
        {
            Assert.Null(kit.Submit($"t{i}"));
        }

        // The scheduler asks to be woken when the oldest request's MaxWait runs out, and not before.
        Assert.Equal(start + TimeSpan.FromMilliseconds(50), kit.Dispatch());
        kit.Time.Advance(TimeSpan.FromMilliseconds(49));
        kit.Dispatch();
        Assert.Empty(model.Batches);

        kit.Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(DateTimeOffset.MaxValue, kit.Dispatch());
        var outcomes = await kit.NextAsync(3);
        Assert.Equal(3, Assert.Single(model.Batches).Length);
        Assert.All(outcomes, o => Assert.Equal(50, o.Delivery.Result!.Timing.QueueMs, precision: 0));
        Assert.Equal([3], kit.Scheduler.Stats.RecentSizes);
    }

    [Fact]
    public async Task Dispatch_MaxWaitZero_RunsAtOnceAndWhatQueuedBehindWhenTheDeviceFrees()
    {
        using var model = new RecordingModel();
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxBatchSize = 8, MaxWait = TimeSpan.Zero, MaxConcurrentBatches = 1 });
        model.Hold();

        Assert.Null(kit.Submit("first"));
        Assert.Equal(1, kit.Scheduler.Running);
        Assert.Null(kit.Submit("second"));
        Assert.Null(kit.Submit("third"));
        Assert.Equal(2, kit.Queue.Count);

        // No clock movement at all: the finished batch lets the next one go.
        model.Release();
        var outcomes = await kit.NextAsync(3);

        // The two batches' hand-overs may interleave (the next batch starts before the first one's outcomes are handed
        // over): what is asserted is that every request ended, and how they were batched.
        Assert.Equal(["first", "second", "third"], outcomes.Select(o => o.Delivery.RequestId).Order());
        Assert.Equal([["first"], ["second", "third"]], model.Batches);
    }

    [Fact]
    public async Task Dispatch_PriorityLevels_HighestLevelBatchedFirst()
    {
        using var model = new RecordingModel();
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxBatchSize = 2, MaxWait = TimeSpan.Zero, PriorityLevels = 3 });
        model.Hold();
        Assert.Null(kit.Submit("busy"));

        Assert.Null(kit.Submit("low", priority: 0));
        Assert.Null(kit.Submit("mid", priority: 1));
        Assert.Null(kit.Submit("high1", priority: 2));
        Assert.Null(kit.Submit("high2", priority: 2));
        model.Release();
        await kit.NextAsync(5);

        Assert.Equal([["busy"], ["high1", "high2"], ["mid", "low"]], model.Batches);
    }

    [Fact]
    public async Task Dispatch_DeadlinePassesWhileQueued_EndsWithDeadlineExceededAndOthersStay()
    {
        using var model = new RecordingModel();
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxBatchSize = 100, MaxWait = TimeSpan.FromSeconds(10) });
        Assert.Null(kit.Submit("short", timeout: TimeSpan.FromMilliseconds(100)));
        Assert.Null(kit.Submit("long", timeout: TimeSpan.FromSeconds(5)));

        kit.Time.Advance(TimeSpan.FromMilliseconds(100));
        kit.Dispatch();

        var expired = Assert.Single(await kit.NextAsync(1));
        Assert.Equal("short", expired.Delivery.RequestId);
        Assert.Equal(ErrorCode.DeadlineExceeded, expired.Delivery.Error?.Code);
        Assert.Equal(1, kit.Queue.Count);
        Assert.Equal(kit.Time.GetUtcNow() + TimeSpan.FromMilliseconds(4900), kit.Queue.EarliestDeadline);
        Assert.Empty(model.Batches);
    }

    [Fact]
    public async Task Cancel_RunningRequest_BatchRunsAndItsResultIsDropped()
    {
        using var model = new RecordingModel();
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxBatchSize = 2, MaxWait = TimeSpan.Zero });
        model.Hold();
        Assert.Null(kit.Submit("keep"));
        Assert.True(kit.Queue.TryForget(("client", "keep"), out var cancelled));
        cancelled.Cancelled = true;
        kit.Scheduler.Cancelled();
        Assert.Null(kit.Submit("next"));

        model.Release();
        var outcome = Assert.Single(await kit.NextAsync(1));

        Assert.Equal("next", outcome.Delivery.RequestId);
        Assert.Equal(2, model.Batches.Count);
    }
}
