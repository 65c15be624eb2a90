using Microsoft.Extensions.Time.Testing;
using StreamInfer.Grains.Sessions;

namespace StreamInfer.Tests.Grains.Sessions;

public sealed class TokenBucketTests
{
    [Fact]
    public void TryTake_Empty_RetryAfterIsTimeToNextToken()
    {
        var time = new FakeTimeProvider();
        var bucket = new TokenBucket(ratePerSecond: 4, burst: 2, time);

        Assert.True(bucket.TryTake(out _));
        Assert.True(bucket.TryTake(out _));
        Assert.False(bucket.TryTake(out var retry));
        Assert.Equal(TimeSpan.FromMilliseconds(250), retry);

        time.Advance(TimeSpan.FromMilliseconds(100));
        Assert.False(bucket.TryTake(out retry));
        Assert.Equal(TimeSpan.FromMilliseconds(150), retry);

        time.Advance(TimeSpan.FromMilliseconds(150));
        Assert.True(bucket.TryTake(out _));
    }

    [Fact]
    public void Refill_LongIdle_CapsAtBurst()
    {
        var time = new FakeTimeProvider();
        var bucket = new TokenBucket(ratePerSecond: 10, burst: 3, time);
        Assert.True(bucket.TryTake(out _));

        time.Advance(TimeSpan.FromHours(1));

        Assert.Equal(3, bucket.Available, precision: 6);
        for (var i = 0; i < 3; i++)
        {
            Assert.True(bucket.TryTake(out _));
        }

        Assert.False(bucket.TryTake(out _));
    }

    [Fact]
    public void Refund_AfterTake_GivesTheTokenBackUpToBurst()
    {
        var time = new FakeTimeProvider();
        var bucket = new TokenBucket(ratePerSecond: 1, burst: 1, time);
        Assert.True(bucket.TryTake(out _));
        Assert.False(bucket.TryTake(out _));

        bucket.Refund();
        bucket.Refund();

        Assert.Equal(1, bucket.Available, precision: 6);
    }

    [Fact]
    public void Spend_PastWhatIsThere_DebtRefillsBeforeAnythingIsTaken()
    {
        var time = new FakeTimeProvider();
        var bucket = new TokenBucket(ratePerSecond: 1000, burst: 1000, time);

        bucket.Spend(3000);
        Assert.False(bucket.TryTake(0, out var retry));
        Assert.Equal(TimeSpan.FromSeconds(2), retry);

        time.Advance(TimeSpan.FromSeconds(2));
        Assert.True(bucket.TryTake(0, out _));
        Assert.False(bucket.TryTake(1, out retry));
        Assert.Equal(TimeSpan.FromMilliseconds(1), retry);
    }
}
