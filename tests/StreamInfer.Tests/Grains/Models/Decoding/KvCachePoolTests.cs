using StreamInfer.Grains.Models.Decoding;

namespace StreamInfer.Tests.Grains.Models.Decoding;

public sealed class KvCachePoolTests
{
    [Fact]
    public void Rent_AfterAReturnOfTheSameSize_HandsTheKeptArrayBack()
    {
        var pool = new KvCachePool(1 << 20);
        var first = pool.Rent(1000);
        Assert.Equal(1024, first.Length);
        pool.Return(first);
        Assert.Equal(4096, pool.FreeBytes);

        var second = pool.Rent(900);

        Assert.Same(first, second);
        Assert.Equal(0, pool.FreeBytes);
        Assert.Equal(4096, pool.LiveBytes);
    }

    [Fact]
    public void Rent_OtherSize_DoesNotTakeAKeptArray()
    {
        var pool = new KvCachePool(1 << 20);
        var small = pool.Rent(1024);
        pool.Return(small);

        var large = pool.Rent(1025);

        Assert.Equal(2048, large.Length);
        Assert.Equal(4096, pool.FreeBytes);
    }

    [Fact]
    public void Return_ArraysInUseAndKeptWouldPassTheBudget_ArrayLeftToTheCollector()
    {
        // Budget for one 4 KiB array; two are in use (admission, not the pool, bounds what is in use).
        var pool = new KvCachePool(4096);
        var a = pool.Rent(1024);
        var b = pool.Rent(1024);
        Assert.Equal(8192, pool.LiveBytes);

        pool.Return(a);
        Assert.Equal(0, pool.FreeBytes);

        pool.Return(b);
        Assert.Equal(4096, pool.FreeBytes);
        Assert.Equal(0, pool.LiveBytes);
        Assert.Same(b, pool.Rent(1024));
    }
}
