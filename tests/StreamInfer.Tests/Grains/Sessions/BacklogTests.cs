using StreamInfer.Grains.Sessions;

namespace StreamInfer.Tests.Grains.Sessions;

public sealed class BacklogTests
{
    [Fact]
    public void TryAdd_CrossingHighWater_WarnsOnceUntilBelowHalf()
    {
        var backlog = new Backlog<int>(10);
        var warned = new List<int>();
        for (var i = 0; i < 10; i++)
        {
            Assert.True(backlog.TryAdd($"r{i}", i, out var warn));
            if (warn)
            {
                warned.Add(backlog.Count);
            }
        }

        Assert.Equal([8], warned);
        Assert.False(backlog.TryAdd("r10", 10, out _));

        // Down to exactly half: still disarmed.
        for (var i = 0; i < 5; i++)
        {
            backlog.Remove($"r{i}", out _);
        }

        Assert.True(backlog.TryAdd("again0", 0, out var w1));
        Assert.True(backlog.TryAdd("again1", 0, out var w2));
        Assert.True(backlog.TryAdd("again2", 0, out var w3));
        Assert.False(w1 || w2 || w3);

        // Below half: re-armed.
        foreach (var id in new[] { "r5", "r6", "r7", "r8" })
        {
            backlog.Remove(id, out _);
        }

        Assert.Equal(4, backlog.Count);
        var warnings = 0;
        for (var i = 0; i < 4; i++)
        {
            backlog.TryAdd($"third{i}", i, out var warn);
            warnings += warn ? 1 : 0;
        }

        Assert.Equal(1, warnings);
        Assert.Equal(8, backlog.Count);
    }

    [Fact]
    public void TryAdd_DuplicateId_Refused()
    {
        var backlog = new Backlog<int>(4);
        Assert.True(backlog.TryAdd("a", 1, out _));
        Assert.False(backlog.TryAdd("a", 2, out _));
        Assert.Equal(1, backlog.Count);
    }
}
