using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;

namespace StreamInfer.Tests.Grains.Batching;

/// <summary>Admission on its own: priority range, capacity, the expected wait against the deadline, the version lease.</summary>
public sealed class AdmissionPolicyTests
{
    [Theory]
    [InlineData(-1)]
    [InlineData(2)]
    public void Admit_PriorityOutsideTheLevels_RefusedInvalidInput(int priority)
    {
        using var model = new RecordingModel();
        using var kit = new SchedulerTestKit(model, new ModelOptions { PriorityLevels = 2, MaxWait = TimeSpan.FromSeconds(1) });

        var refused = kit.Submit("p", priority);

        Assert.Equal(ErrorCode.InvalidInput, refused?.Code);
        Assert.Contains("levels 0 to 1", refused!.Message, StringComparison.Ordinal);
        Assert.Equal(0, kit.Queue.Count);
    }

    [Fact]
    public void Admit_QueueAtCapacity_RefusedOverloadedWithRetryAfter()
    {
        using var model = new RecordingModel(warmBatchMs: 40);
        using var kit = new SchedulerTestKit(model, new ModelOptions { QueueCapacity = 2, MaxBatchSize = 100, MaxWait = TimeSpan.FromSeconds(1) });
        Assert.Null(kit.Submit("q1"));
        Assert.Null(kit.Submit("q2"));

        var refused = kit.Submit("q3");

        Assert.Equal(ErrorCode.Overloaded, refused?.Code);
        // Two queued rows fill one batch of the warm-up's 40 ms.
        Assert.Equal(40, refused!.RetryAfterMs);
        Assert.Equal(2, kit.Queue.Count);
    }

    [Fact]
    public void Admit_ExpectedWaitPastTheDeadline_RefusedOverloadedForTheDifference()
    {
        using var model = new RecordingModel(warmBatchMs: 100);
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxBatchSize = 1, MaxWait = TimeSpan.FromSeconds(1) });
        model.Hold();
        Assert.Null(kit.Submit("ahead", timeout: TimeSpan.FromSeconds(10)));

        // The batch on the device and its own: 200 ms expected, 150 ms left.
        var refused = kit.Submit("late", timeout: TimeSpan.FromMilliseconds(150));

        Assert.Equal(ErrorCode.Overloaded, refused?.Code);
        Assert.Equal(50, refused!.RetryAfterMs);
        Assert.Null(kit.Submit("fits", timeout: TimeSpan.FromMilliseconds(250)));
        model.Release();
    }

    [Fact]
    public void Admit_IdleBatcherWhoseBatchTimeExceedsTheDeadline_AdmittedAndRunAtOnce()
    {
        // A batch time far past the deadline (as one slow batch on a starved machine leaves it) refuses nothing while
        // the device is idle and nothing is queued: otherwise no batch would run to correct it.
        using var model = new RecordingModel(warmBatchMs: 60_000);
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxBatchSize = 1, MaxWait = TimeSpan.Zero });
        model.Hold();

        Assert.Null(kit.Submit("alone", timeout: TimeSpan.FromSeconds(1)));
        Assert.Equal(1, kit.Scheduler.Running);
        Assert.Equal(ErrorCode.Overloaded, kit.Submit("behind", timeout: TimeSpan.FromSeconds(1))?.Code);
        model.Release();
    }

    [Fact]
    public void Admit_HigherPriority_OnlyRowsAtOrAboveItCountAgainstItsDeadline()
    {
        using var model = new RecordingModel(warmBatchMs: 100);
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxBatchSize = 1, MaxWait = TimeSpan.FromSeconds(1), PriorityLevels = 2 });
        model.Hold();
        Assert.Null(kit.Submit("low1", priority: 0, timeout: TimeSpan.FromSeconds(10)));
        Assert.Null(kit.Submit("low2", priority: 0, timeout: TimeSpan.FromSeconds(10)));

        // On the device, one queued low and its own: 300 ms for a low; a high skips the queued low: 200 ms.
        Assert.Equal(ErrorCode.Overloaded, kit.Submit("low3", priority: 0, timeout: TimeSpan.FromMilliseconds(250))?.Code);
        Assert.Null(kit.Submit("high", priority: 1, timeout: TimeSpan.FromMilliseconds(250)));
        model.Release();
    }

    [Fact]
    public void Admit_SameIdAlreadyHeld_RefusedBadRequest()
    {
        using var model = new RecordingModel();
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxWait = TimeSpan.FromSeconds(1) });
        Assert.Null(kit.Submit("dup"));

        Assert.Equal(ErrorCode.BadRequest, kit.Submit("dup")?.Code);
        Assert.Equal(1, kit.Queue.Count);
    }

    [Fact]
    public void Admit_LeaseReleasedMeanwhile_StaleWithoutQueueing()
    {
        using var model = new RecordingModel();
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxWait = TimeSpan.FromSeconds(1) });
        var released = new ModelLease(model, _ => { });
        released.Release();
        var now = kit.Time.GetUtcNow();
        var item = new BatchItem("client", new InferRequest("r", model.Name, [], null, null, "fe", ReplyObserver: new NullObserver()), now, now.AddMinutes(1));

        var refused = kit.Admission.Admit(item, released, kit.Options, out var stale);

        Assert.Null(refused);
        Assert.True(stale);
        Assert.Equal(0, kit.Queue.Count);
    }

    [Fact]
    public void Admit_NoDeliveryObserver_RefusedInternal()
    {
        using var model = new RecordingModel();
        using var kit = new SchedulerTestKit(model, new ModelOptions());
        var now = kit.Time.GetUtcNow();
        var item = new BatchItem("client", new InferRequest("r", model.Name, [], null, null, "fe"), now, now.AddMinutes(1));

        Assert.Equal(ErrorCode.Internal, kit.Admission.Admit(item, kit.Lease, kit.Options, out _)?.Code);
    }

    private sealed class NullObserver : IDeliveryObserver
    {
        public Task DeliverAsync(DeliveryBatch batch) => Task.CompletedTask;
    }
}
