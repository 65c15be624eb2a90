using StreamInfer.Tests.Grains.Models.Onnx;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Sessions;

/// <summary>
/// The session's side of stateful sequences, on the stateful test model (the session logic is what is tested; the
/// outputs show the requests ran in order on one state): a
/// sequence's requests reach its batcher one at a time in the order they were submitted; ordered ones wait in the
/// session, unordered ones are refused; misuse is refused before any batcher sees it; a disconnect ends the sequences.
/// </summary>
[Collection(SequenceClusterCollection.Name)]
public sealed class SessionSequenceTests(SequenceClusterFixture fixture)
{
    [Fact]
    public async Task Submit_OrderedRequestsBackToBack_ReachTheBatcherOneAtATimeInSendOrder()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        var ids = Enumerable.Range(0, 12).Select(i => $"r{i}").ToList();

        for (var i = 0; i < ids.Count; i++)
        {
            var admission = await session.SubmitAsync(InSequence(probe, ids[i], SequenceClusterFixture.Alone, "s", start: i == 0, end: i == ids.Count - 1, value: i));
            Assert.True(admission.Accepted, admission.Error?.Message);
            Assert.Equal(fixture.SiloKey, admission.Silo);
        }

        // Deliveries from a grain to an observer are not ordered among themselves (a frontend puts a sequence's answers
        // back in order itself): what is asserted is the order the requests reached the batcher, and that each one ran
        // on the state its predecessors left.
        var deliveries = (await probe.ReceiveAsync(ids.Count)).ToDictionary(d => d.RequestId);

        Assert.Equal(ids.Order(StringComparer.Ordinal), deliveries.Keys.Order(StringComparer.Ordinal));
        Assert.All(deliveries.Values, d => Assert.NotNull(d.Result));
        Assert.Equal(ids, BatcherCalls.EnqueuedBy(clientId));
        var state = new float[2 * TestModels.StateWidth];
        for (var i = 0; i < ids.Count; i++)
        {
            (state, var output) = TestModels.StatefulStep(state, [i, i + 1], SequenceClusterFixture.SampleRate);
            BatchAxisTests.AssertClose([output], BatchAxisTests.Floats(deliveries[ids[i]].Result!.Outputs[0].Tensor));
        }

        // The end completed: the session forgets the sequence.
        await Eventually.UntilAsync(session.GetStatusAsync, s => s is { Sequences: 0, Backlog: 0 }, what: "sequence forgotten after its end");
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_OrderedWhilePreviousUnfinished_WaitsInSessionAndGoesWhenItEnds()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        var batcher = fixture.Client.GetGrain<IBatcherGrain>(fixture.BatcherKeyFor(SequenceClusterFixture.Held));
        var before = (await batcher.GetStatusAsync()).Queued;

        foreach (var (id, start) in new[] { ("a0", true), ("a1", false), ("a2", false), ("a3", false) })
        {
            var admission = await session.SubmitAsync(InSequence(probe, id, SequenceClusterFixture.Held, "s", start));
            Assert.True(admission.Accepted, admission.Error?.Message);
            // A waiting request names the silo of the batcher that will run it.
            Assert.Equal(fixture.SiloKey, admission.Silo);
        }

        // Only the first is at the batcher; all four count in the backlog. A waiting one cancels without the batcher.
        Assert.Equal(before + 1, (await batcher.GetStatusAsync()).Queued);
        Assert.Equal(4, (await session.GetStatusAsync()).Backlog);
        Assert.Null(await session.CancelAsync("a2"));
        Assert.Equal(3, (await session.GetStatusAsync()).Backlog);
        Assert.Equal(["a0"], BatcherCalls.EnqueuedBy(clientId));

        await SequenceClusterFixture.AdvanceAsync(SequenceClusterFixture.HeldWait);
        Assert.Equal("a0", Assert.Single(await probe.ReceiveAsync(1)).RequestId);
        await Eventually.UntilAsync(() => Task.FromResult(BatcherCalls.EnqueuedBy(clientId)), e => e.Count == 2, what: "a1 forwarded once a0 ended");

        await SequenceClusterFixture.AdvanceAsync(SequenceClusterFixture.HeldWait);
        Assert.Equal("a1", Assert.Single(await probe.ReceiveAsync(1)).RequestId);
        await Eventually.UntilAsync(() => Task.FromResult(BatcherCalls.EnqueuedBy(clientId)), e => e.Count == 3, what: "a3 forwarded once a1 ended");

        await SequenceClusterFixture.AdvanceAsync(SequenceClusterFixture.HeldWait);
        Assert.Equal("a3", Assert.Single(await probe.ReceiveAsync(1)).RequestId);
        Assert.Equal(["a0", "a1", "a3"], BatcherCalls.EnqueuedBy(clientId));
        Assert.Equal(0, probe.Unread);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_WaitingRequestAfterAFailedOne_StillGoes()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out _);

        Assert.True((await session.SubmitAsync(InSequence(probe, "f0", SequenceClusterFixture.Held, "s", start: true))).Accepted);
        // The model refuses a request without inputs when it reaches the batcher: after it was admitted here.
        var empty = InSequence(probe, "f1", SequenceClusterFixture.Held, "s", start: false) with { Inputs = [] };
        Assert.True((await session.SubmitAsync(empty)).Accepted);
        Assert.True((await session.SubmitAsync(InSequence(probe, "f2", SequenceClusterFixture.Held, "s", start: false))).Accepted);

        await SequenceClusterFixture.AdvanceAsync(SequenceClusterFixture.HeldWait);
        // f1's refusal is delivered by the session, f0's result by the batcher: either may arrive first.
        var ends = (await probe.ReceiveAsync(2)).ToDictionary(d => d.RequestId);
        Assert.NotNull(ends["f0"].Result);
        Assert.Equal(ErrorCode.InvalidInput, ends["f1"].Error?.Code);
        await Eventually.UntilAsync(session.GetStatusAsync, s => s.Backlog == 1, what: "f2 alone left");

        await SequenceClusterFixture.AdvanceAsync(SequenceClusterFixture.HeldWait);
        var last = Assert.Single(await probe.ReceiveAsync(1));
        Assert.Equal("f2", last.RequestId);
        Assert.NotNull(last.Result);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Cancel_RunningRequestOfASequence_CancelledAtTheBatcherThenTheNextGoes()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        var batcher = fixture.Client.GetGrain<IBatcherGrain>(fixture.BatcherKeyFor(SequenceClusterFixture.Held));
        var before = (await batcher.GetStatusAsync()).Queued;
        Assert.True((await session.SubmitAsync(InSequence(probe, "k0", SequenceClusterFixture.Held, "s", start: true))).Accepted);
        Assert.True((await session.SubmitAsync(InSequence(probe, "k1", SequenceClusterFixture.Held, "s", start: false))).Accepted);

        Assert.Null(await session.CancelAsync("k0"));

        // Only the next one is queued: the cancelled one left the batcher before it arrived.
        await Eventually.UntilAsync(() => Task.FromResult(BatcherCalls.EnqueuedBy(clientId)), e => e.Count == 2, what: "k1 forwarded once k0 was cancelled");
        Assert.Equal(["k0", "k1"], BatcherCalls.EnqueuedBy(clientId));
        Assert.Equal(before + 1, (await batcher.GetStatusAsync()).Queued);
        await SequenceClusterFixture.AdvanceAsync(SequenceClusterFixture.HeldWait);
        Assert.Equal("k1", Assert.Single(await probe.ReceiveAsync(1)).RequestId);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_StartAgainBehindTheEnd_WaitsForTheEndThenBeginsANewSequence()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        string[] ids = ["e0", "e1", "e2", "e3"];
        foreach (var (id, start, end) in new[] { ("e0", true, false), ("e1", false, true), ("e2", true, false), ("e3", false, false) })
        {
            Assert.True((await session.SubmitAsync(InSequence(probe, id, SequenceClusterFixture.Held, "s", start, end))).Accepted);
        }

        for (var i = 0; i < ids.Length; i++)
        {
            await Eventually.UntilAsync(() => Task.FromResult(BatcherCalls.EnqueuedBy(clientId)), e => e.Count == i + 1, what: $"{ids[i]} forwarded");
            await SequenceClusterFixture.AdvanceAsync(SequenceClusterFixture.HeldWait);
            var delivery = Assert.Single(await probe.ReceiveAsync(1));
            Assert.Equal(ids[i], delivery.RequestId);
            Assert.NotNull(delivery.Result);
        }

        Assert.Equal(ids, BatcherCalls.EnqueuedBy(clientId));
        await Eventually.UntilAsync(session.GetStatusAsync, s => s is { Backlog: 0, Sequences: 1 }, what: "the second sequence runs");
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_WaitingRequestPastItsDeadline_EndsDeadlineExceededFromTheSession()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);

        Assert.True((await session.SubmitAsync(InSequence(probe, "d0", SequenceClusterFixture.Held, "s", start: true))).Accepted);
        var waiting = InSequence(probe, "d1", SequenceClusterFixture.Held, "s", start: false) with { Timeout = TimeSpan.FromSeconds(1) };
        var admission = await session.SubmitAsync(waiting);
        Assert.Equal(TimeSpan.FromSeconds(1), admission.Timeout);

        await SequenceClusterFixture.AdvanceAsync(TimeSpan.FromSeconds(1));

        var expired = Assert.Single(await probe.ReceiveAsync(1));
        Assert.Equal(("d1", (ErrorCode?)ErrorCode.DeadlineExceeded), (expired.RequestId, expired.Error?.Code));
        Assert.Equal(1, (await session.GetStatusAsync()).Backlog);
        Assert.Equal(["d0"], BatcherCalls.EnqueuedBy(clientId));
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_UnorderedWhilePreviousUnfinished_RefusedBusyOrExistsAndNothingForwarded()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        Assert.True((await session.SubmitAsync(InSequence(probe, "u0", SequenceClusterFixture.Held, "s", start: true, ordered: false))).Accepted);

        var busy = await session.SubmitAsync(InSequence(probe, "u1", SequenceClusterFixture.Held, "s", start: false, ordered: false));
        var exists = await session.SubmitAsync(InSequence(probe, "u2", SequenceClusterFixture.Held, "s", start: true, ordered: false));

        Assert.Equal(ErrorCode.SequenceBusy, busy.Error?.Code);
        Assert.Equal(ErrorCode.SequenceExists, exists.Error?.Code);
        Assert.Contains("'s'", busy.Error!.Message, StringComparison.Ordinal);
        Assert.Equal(1, (await session.GetStatusAsync()).Backlog);
        Assert.Equal(["u0"], BatcherCalls.EnqueuedBy(clientId));
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_Misuse_RefusedAtTheSession()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);

        var unknown = await session.SubmitAsync(InSequence(probe, "m0", SequenceClusterFixture.Alone, "never-started", start: false));
        Assert.Equal(ErrorCode.UnknownSequence, unknown.Error?.Code);

        Assert.True((await session.SubmitAsync(InSequence(probe, "m1", SequenceClusterFixture.Alone, "s", start: true))).Accepted);
        Assert.Equal("m1", Assert.Single(await probe.ReceiveAsync(1)).RequestId);
        await Eventually.UntilAsync(session.GetStatusAsync, s => s.Backlog == 0, what: "m1 completed");
        var otherModel = await session.SubmitAsync(InSequence(probe, "m2", SequenceClusterFixture.Held, "s", start: false));
        Assert.Equal(ErrorCode.BadRequest, otherModel.Error?.Code);
        Assert.Contains(SequenceClusterFixture.Alone, otherModel.Error!.Message, StringComparison.Ordinal);

        // The sequence still serves after its misuse; an end forgets it, and what follows is unknown.
        Assert.True((await session.SubmitAsync(InSequence(probe, "m3", SequenceClusterFixture.Alone, "s", start: false, end: true))).Accepted);
        Assert.Equal("m3", Assert.Single(await probe.ReceiveAsync(1)).RequestId);
        await Eventually.UntilAsync(session.GetStatusAsync, s => s.Sequences == 0, what: "s forgotten after its end");
        Assert.Equal(ErrorCode.UnknownSequence, (await session.SubmitAsync(InSequence(probe, "m4", SequenceClusterFixture.Alone, "s", start: false))).Error?.Code);
        Assert.Equal(["m1", "m3"], BatcherCalls.EnqueuedBy(clientId));
        await session.CloseAsync();
    }

    [Fact]
    public async Task Close_WithSequences_EndsThemAtTheirBatcherAfterCancellingTheirRequests()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        var batcher = fixture.Client.GetGrain<IBatcherGrain>(fixture.BatcherKeyFor(SequenceClusterFixture.Held));
        var before = (await batcher.GetStatusAsync()).Queued;
        foreach (var (id, sequence, start) in new[] { ("c0", "a", true), ("c1", "b", true), ("c2", "a", false) })
        {
            Assert.True((await session.SubmitAsync(InSequence(probe, id, SequenceClusterFixture.Held, sequence, start))).Accepted);
        }

        Assert.Equal(2, (await session.GetStatusAsync()).Sequences);
        Assert.Equal(before + 2, (await batcher.GetStatusAsync()).Queued);

        await session.CloseAsync();

        var ended = Assert.Single(BatcherCalls.EndedFor(clientId));
        Assert.Equal(fixture.BatcherKeyFor(SequenceClusterFixture.Held), ended.Batcher);
        Assert.Equal(["a", "b"], ended.Sequences.Order(StringComparer.Ordinal));
        Assert.Equal(before, (await batcher.GetStatusAsync()).Queued);
        Assert.Equal(0, probe.Unread);
    }

    [Fact]
    public async Task Submit_EndExpiresInTheBatchersQueue_SequenceFreedThereAndForgottenHere()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        Assert.True((await session.SubmitAsync(InSequence(probe, "x0", SequenceClusterFixture.Held, "s", start: true))).Accepted);
        await SequenceClusterFixture.AdvanceAsync(SequenceClusterFixture.HeldWait);
        Assert.NotNull(Assert.Single(await probe.ReceiveAsync(1)).Result);
        await Eventually.UntilAsync(session.GetStatusAsync, s => s.Backlog == 0, what: "x0 completed");

        var end = InSequence(probe, "x1", SequenceClusterFixture.Held, "s", start: false, end: true) with { Timeout = TimeSpan.FromSeconds(1) };
        Assert.True((await session.SubmitAsync(end)).Accepted);
        Assert.Equal(["x0", "x1"], BatcherCalls.EnqueuedBy(clientId));
        await SequenceClusterFixture.AdvanceAsync(TimeSpan.FromSeconds(1));

        var expired = Assert.Single(await probe.ReceiveAsync(1));
        Assert.Equal(("x1", (ErrorCode?)ErrorCode.DeadlineExceeded), (expired.RequestId, expired.Error?.Code));
        await Eventually.UntilAsync(session.GetStatusAsync, s => s is { Backlog: 0, Sequences: 0 }, what: "the sequence forgotten after its end ended");
        // The batcher freed its state too: a request of it straight to the batcher is refused.
        Assert.Equal(ErrorCode.UnknownSequence, (await BatcherAsync(probe, clientId, "x2", "s", start: false))?.Code);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_StartExpiresInTheBatchersQueue_SequenceClosedAndItsNextRequestUnknown()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        var start = InSequence(probe, "y0", SequenceClusterFixture.Held, "s", start: true) with { Timeout = TimeSpan.FromSeconds(1) };
        Assert.True((await session.SubmitAsync(start)).Accepted);
        await SequenceClusterFixture.AdvanceAsync(TimeSpan.FromSeconds(1));
        Assert.Equal(ErrorCode.DeadlineExceeded, Assert.Single(await probe.ReceiveAsync(1)).Error?.Code);
        await Eventually.UntilAsync(session.GetStatusAsync, s => s.Backlog == 0, what: "y0 completed");

        // Nothing ran, so nothing was kept: the next request is refused, and the session forgets the sequence.
        var next = await session.SubmitAsync(InSequence(probe, "y1", SequenceClusterFixture.Held, "s", start: false));
        Assert.Equal(ErrorCode.UnknownSequence, next.Error?.Code);
        Assert.Equal(0, (await session.GetStatusAsync()).Sequences);
        Assert.Equal(["y0", "y1"], BatcherCalls.EnqueuedBy(clientId));
        await session.CloseAsync();
    }

    /// <summary>Enqueues a request of a sequence at the held model's batcher directly, as the session would.</summary>
    private Task<InferError?> BatcherAsync(DeliveryProbe probe, string clientId, string id, string sequence, bool start)
    {
        var now = SequenceClusterFixture.Time.GetUtcNow();
        var item = new BatchItem(clientId, InSequence(probe, id, SequenceClusterFixture.Held, sequence, start), now, now + TimeSpan.FromMinutes(10));
        return fixture.Client.GetGrain<IBatcherGrain>(fixture.BatcherKeyFor(SequenceClusterFixture.Held)).EnqueueAsync(item);
    }

    /// <summary>A chunk of the stateful model's: samples <paramref name="value"/> and one more, at the fixture's rate.</summary>
    private static InferRequest InSequence(DeliveryProbe probe, string id, string model, string sequence, bool start, bool end = false, bool ordered = true, float value = 1)
        => probe.Request(id, model, value: value) with
        {
            Inputs = [new NamedTensor("input", Tensors.Floats([1, 2], value, value + 1)), new NamedTensor("sr", BatchAxisTests.Int64([], SequenceClusterFixture.SampleRate))],
            Sequence = new SequenceControl(sequence, start, end, ordered),
        };
}
