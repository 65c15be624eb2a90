using Microsoft.Extensions.Time.Testing;
using StreamInfer.Grains.Clocks;

namespace StreamInfer.Tests.Grains.Clocks;

public sealed class RebasedTimeProviderTests
{
    [Fact]
    public void GetElapsedTime_FromZero_IsTheTimeSinceCreationNotSinceTheInnerOrigin()
    {
        var inner = new FakeTimeProvider();
        inner.Advance(TimeSpan.FromHours(3));
        var time = new RebasedTimeProvider(inner);

        inner.Advance(TimeSpan.FromSeconds(2));

        Assert.Equal(TimeSpan.FromSeconds(2), time.GetElapsedTime(0));
        Assert.True(inner.GetElapsedTime(0) > TimeSpan.FromHours(3));
    }

    [Fact]
    public void GetElapsedTime_BetweenTwoTimestamps_SameAsTheInnerClock()
    {
        var inner = new FakeTimeProvider();
        inner.Advance(TimeSpan.FromMinutes(10));
        var time = new RebasedTimeProvider(inner);
        var (start, innerStart) = (time.GetTimestamp(), inner.GetTimestamp());

        inner.Advance(TimeSpan.FromMilliseconds(1234));

        Assert.Equal(inner.GetElapsedTime(innerStart), time.GetElapsedTime(start));
        Assert.Equal(TimeSpan.FromMilliseconds(1234), time.GetElapsedTime(start));
    }

    [Fact]
    public void GetUtcNowAndCreateTimer_AreTheInnerClocks()
    {
        var inner = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var time = new RebasedTimeProvider(inner);
        var fired = 0;
        using var timer = time.CreateTimer(_ => fired++, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);

        inner.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(1, fired);
        Assert.Equal(inner.GetUtcNow(), time.GetUtcNow());
    }
}
