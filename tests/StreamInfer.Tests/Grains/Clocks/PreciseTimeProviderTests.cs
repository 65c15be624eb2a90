using StreamInfer.Grains.Clocks;

namespace StreamInfer.Tests.Grains.Clocks;

public sealed class PreciseTimeProviderTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task CreateTimer_WithDueTime_FiresOnceOnThePool()
    {
        using var time = new PreciseTimeProvider();
        var fired = 0;
        var first = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var timer = time.CreateTimer(_ => { Interlocked.Increment(ref fired); first.TrySetResult(Thread.CurrentThread.IsThreadPoolThread); }, null, TimeSpan.FromMilliseconds(5), Timeout.InfiniteTimeSpan);

        Assert.True(await first.Task.WaitAsync(Deadline));

        // A later one-shot timer fires after it: by then the first would have fired again if it were periodic.
        var later = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var probe = time.CreateTimer(_ => later.TrySetResult(), null, TimeSpan.FromMilliseconds(30), Timeout.InfiniteTimeSpan);
        await later.Task.WaitAsync(Deadline);
        Assert.Equal(1, Volatile.Read(ref fired));
    }

    [Fact]
    public async Task Change_ToInfinite_CancelsThePendingTick()
    {
        using var time = new PreciseTimeProvider();
        var cancelledFired = false;
        using var cancelled = time.CreateTimer(_ => cancelledFired = true, null, TimeSpan.FromMilliseconds(20), Timeout.InfiniteTimeSpan);
        Assert.True(cancelled.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan));

        var later = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var probe = time.CreateTimer(_ => later.TrySetResult(), null, TimeSpan.FromMilliseconds(60), Timeout.InfiniteTimeSpan);
        await later.Task.WaitAsync(Deadline);

        Assert.False(Volatile.Read(ref cancelledFired));
    }

    [Fact]
    public async Task CreateTimer_WithPeriod_KeepsFiringUntilDisposed()
    {
        using var time = new PreciseTimeProvider();
        var ticks = 0;
        var three = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var timer = time.CreateTimer(_ => { if (Interlocked.Increment(ref ticks) == 3) { three.TrySetResult(); } }, null, TimeSpan.Zero, TimeSpan.FromMilliseconds(2));

        await three.Task.WaitAsync(Deadline);
        timer.Dispose();
        Assert.False(timer.Change(TimeSpan.Zero, TimeSpan.Zero));
    }
}
