using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Sessions;

[Collection(ClusterCollection.Name)]
public sealed class ClientSessionGrainTests(ClusterFixture fixture)
{
    [Fact]
    public async Task Submit_BurstSpent_RateLimitedWithRetryAfterFromRefillRate()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();

        // The clock stands still: exactly the burst is admitted.
        for (var i = 0; i < ClusterFixture.Burst; i++)
        {
            Assert.True((await session.SubmitAsync(probe.Request($"r{i}", "hold-rate"))).Accepted, $"request {i} of the burst");
        }

        var refused = await session.SubmitAsync(probe.Request("over", "hold-rate"));
        Assert.Equal(ErrorCode.RateLimited, refused.Error?.Code);
        // One token at 100/s is 10 ms away.
        Assert.Equal(10, refused.Error!.RetryAfterMs);

        // Part of the way there, the wait shrinks by exactly the time passed (each try a new request: an id sent again
        // gets the answer its first got).
        await ClusterFixture.AdvanceAsync(TimeSpan.FromMilliseconds(4));
        refused = await session.SubmitAsync(probe.Request("over-2", "hold-rate"));
        Assert.Equal(6, refused.Error?.RetryAfterMs);

        await ClusterFixture.AdvanceAsync(TimeSpan.FromMilliseconds(6));
        Assert.True((await session.SubmitAsync(probe.Request("over-3", "hold-rate"))).Accepted);
        Assert.Equal(ErrorCode.RateLimited, (await session.SubmitAsync(probe.Request("over-4", "hold-rate"))).Error?.Code);

        // A refusal costs no backlog slot.
        Assert.Equal((int)ClusterFixture.Burst + 1, (await session.GetStatusAsync()).Backlog);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_BacklogCrossesEightyPercent_WarnsOnceThenRefusesWhenFull_RearmsBelowHalf()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        var warnings = new List<int>();
        var n = 0;

        async Task<Admission> SubmitAsync()
        {
            // Refill the bucket so that only the backlog limits.
            await ClusterFixture.AdvanceAsync(TimeSpan.FromMilliseconds(10));
            var admission = await session.SubmitAsync(probe.Request($"b{n}", "hold-backlog"));
            if (admission.Warning is { } w)
            {
                Assert.Equal(ClusterFixture.Backlog, w.Capacity);
                warnings.Add(w.Backlog);
            }

            n++;
            return admission;
        }

        for (var i = 0; i < ClusterFixture.Backlog; i++)
        {
            Assert.True((await SubmitAsync()).Accepted);
        }

        // 80% of 32 is 25.6: the warning comes with the 26th, once.
        Assert.Equal([26], warnings);
        var full = await SubmitAsync();
        Assert.Equal(ErrorCode.BacklogFull, full.Error?.Code);

        // Down to 16 (half): not yet re-armed; up again past 26 gives no second warning.
        for (var i = 0; i < 16; i++)
        {
            Assert.Null(await session.CancelAsync($"b{i}"));
        }

        for (var i = 0; i < 11; i++)
        {
            Assert.True((await SubmitAsync()).Accepted);
        }

        Assert.Equal([26], warnings);

        // Below half (15 of 32) re-arms it: the next crossing warns again.
        for (var i = 16; i < 28; i++)
        {
            Assert.Null(await session.CancelAsync($"b{i}"));
        }

        Assert.Equal(15, (await session.GetStatusAsync()).Backlog);
        for (var i = 0; i < 11; i++)
        {
            Assert.True((await SubmitAsync()).Accepted);
        }

        Assert.Equal([26, 26], warnings);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Cancel_QueuedRequest_ReleasesSlotAndDropsItFromBatcher()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        var before = (await fixture.Batcher("hold-cancel").GetStatusAsync()).Queued;
        Assert.True((await session.SubmitAsync(probe.Request("c1", "hold-cancel"))).Accepted);
        Assert.True((await session.SubmitAsync(probe.Request("c2", "hold-cancel"))).Accepted);

        Assert.Null(await session.CancelAsync("c1"));

        Assert.Equal(1, (await session.GetStatusAsync()).Backlog);
        Assert.Equal(before + 1, (await fixture.Batcher("hold-cancel").GetStatusAsync()).Queued);

        var unknown = await session.CancelAsync("c1");
        Assert.Equal(ErrorCode.BadRequest, unknown?.Code);
        await session.CloseAsync();
        Assert.Equal(0, probe.Unread);
    }

    [Fact]
    public async Task Close_WithRequestsQueued_CancelsAllAndReleasesBacklog()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        var before = (await fixture.Batcher("hold-cancel").GetStatusAsync()).Queued;
        for (var i = 0; i < 5; i++)
        {
            await ClusterFixture.AdvanceAsync(TimeSpan.FromMilliseconds(10));
            Assert.True((await session.SubmitAsync(probe.Request($"x{i}", "hold-cancel"))).Accepted);
        }

        Assert.Equal(before + 5, (await fixture.Batcher("hold-cancel").GetStatusAsync()).Queued);

        await session.CloseAsync();

        Assert.Equal(before, (await fixture.Batcher("hold-cancel").GetStatusAsync()).Queued);
        var status = await session.GetStatusAsync();
        Assert.Equal(0, status.Backlog);
        Assert.Equal(0, probe.Unread);
    }

    [Fact]
    public async Task Submit_UnknownModel_Refused()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();

        Assert.Equal(ErrorCode.UnknownModel, (await session.SubmitAsync(probe.Request("u1", "no-such-model"))).Error?.Code);

        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_IdHeldSentAgain_AcceptedWithItsSiloAndNothingTakenOrQueuedTwice()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        var before = (await fixture.Batcher("hold-cancel").GetStatusAsync()).Queued;
        var first = await session.SubmitAsync(probe.Request("again", "hold-cancel"));
        Assert.True(first.Accepted);
        var tokens = (await session.GetStatusAsync()).Tokens;

        var again = await session.SubmitAsync(probe.Request("again", "hold-cancel"));

        Assert.True(again.Accepted);
        Assert.Equal(first.Silo, again.Silo);
        Assert.Equal(first.Timeout, again.Timeout);
        var status = await session.GetStatusAsync();
        Assert.Equal(1, status.Backlog);
        Assert.Equal(tokens, status.Tokens);
        Assert.Equal(before + 1, (await fixture.Batcher("hold-cancel").GetStatusAsync()).Queued);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_IdAnsweredSentAgain_AcceptedWithoutRunningItAgain()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        await ClusterFixture.AdvanceAsync(TimeSpan.FromMilliseconds(10));
        Assert.True((await session.SubmitAsync(probe.Request("done-once"))).Accepted);
        Assert.Single(await probe.ReceiveAsync(1));
        await Eventually.UntilAsync(session.GetStatusAsync, s => s.Backlog == 0, what: "the backlog freed");
        var tokens = (await session.GetStatusAsync()).Tokens;

        var again = await session.SubmitAsync(probe.Request("done-once"));

        Assert.True(again.Accepted);
        Assert.Null(again.Silo);
        var status = await session.GetStatusAsync();
        Assert.Equal(0, status.Backlog);
        Assert.Equal(tokens, status.Tokens);
        await session.CloseAsync();
        Assert.Equal(0, probe.Unread);
    }

    [Fact]
    public async Task Submit_IdRefusedSentAgain_SameRefusalAndNothingRuns()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        await ClusterFixture.AdvanceAsync(TimeSpan.FromMilliseconds(10));
        var refused = await session.SubmitAsync(probe.Request("refused-once", "no-such-model"));
        Assert.Equal(ErrorCode.UnknownModel, refused.Error?.Code);
        var tokens = (await session.GetStatusAsync()).Tokens;

        // The copy names a model that exists: it must still get the first copy's answer, not run.
        var again = await session.SubmitAsync(probe.Request("refused-once", "hold-cancel"));

        Assert.Equal(refused.Error, again.Error);
        var status = await session.GetStatusAsync();
        Assert.Equal(0, status.Backlog);
        Assert.Equal(tokens, status.Tokens);
        await session.CloseAsync();
    }
}
