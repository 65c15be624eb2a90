using StreamInfer.Tests.Grains.Models.Onnx;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Sessions;

/// <summary>
/// How a session's sequences recover when it and its batcher disagree (a sequence the batcher holds that the session
/// lost track of, a completion that never arrived), the client's limit of open sequences, an answer that reaches the
/// client only after its session heard of it, and a sequence on a model that keeps no state.
/// </summary>
[Collection(SequenceClusterCollection.Name)]
public sealed class SessionSequenceRecoveryTests(SequenceClusterFixture fixture)
{
    [Fact]
    public async Task Submit_FreshStartOfASequenceTheBatcherStillHolds_EndsItThereAndTheRetryStartsAfresh()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        var batcherKey = fixture.BatcherKeyFor(SequenceClusterFixture.Alone);

        // The batcher holds a sequence of this client's that its session never heard of (an earlier activation's).
        var now = SequenceClusterFixture.Time.GetUtcNow();
        var old = new BatchItem(clientId, Chunk(probe, "old", "s", start: true, value: 50), now, now + TimeSpan.FromMinutes(1));
        Assert.Null(await fixture.Client.GetGrain<IBatcherGrain>(batcherKey).EnqueueAsync(old));
        Assert.Equal("old", Assert.Single(await probe.ReceiveAsync(1)).RequestId);

        var refused = await session.SubmitAsync(Chunk(probe, "n0", "s", start: true));

        Assert.Equal(ErrorCode.SequenceExists, refused.Error?.Code);
        Assert.Contains("ended", refused.Error!.Message, StringComparison.Ordinal);
        Assert.Contains(BatcherCalls.EndedFor(clientId), e => e.Batcher == batcherKey && e.Sequences.SequenceEqual(["s"]));
        Assert.Equal(0, (await session.GetStatusAsync()).Sequences);

        // The retry starts on the model's initial state, and the next chunk follows it, not the old sequence's.
        var state = new float[2 * TestModels.StateWidth];
        foreach (var (id, start, value) in new[] { ("n1", true, 1f), ("n2", false, 3f) })
        {
            var admission = await session.SubmitAsync(Chunk(probe, id, "s", start, value: value));
            Assert.True(admission.Accepted, admission.Error?.Message);
            var delivery = Assert.Single(await probe.ReceiveAsync(1));
            (state, var output) = TestModels.StatefulStep(state, [value, value + 1], SequenceClusterFixture.SampleRate);
            BatchAxisTests.AssertClose([output], BatchAxisTests.Floats(delivery.Result!.Outputs[0].Tensor));
            await Eventually.UntilAsync(session.GetStatusAsync, s => s.Backlog == 0, what: $"{id} completed");
        }

        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_StartOfASequenceRunningHere_SequenceExistsAndNothingEnded()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        Assert.True((await session.SubmitAsync(Chunk(probe, "r0", "s", start: true))).Accepted);
        Assert.Single(await probe.ReceiveAsync(1));
        await Eventually.UntilAsync(session.GetStatusAsync, s => s.Backlog == 0, what: "r0 completed");

        var again = await session.SubmitAsync(Chunk(probe, "r1", "s", start: true));

        Assert.Equal(ErrorCode.SequenceExists, again.Error?.Code);
        Assert.Empty(BatcherCalls.EndedFor(clientId));
        Assert.Equal(1, (await session.GetStatusAsync()).Sequences);
        Assert.True((await session.SubmitAsync(Chunk(probe, "r2", "s", start: false))).Accepted);
        Assert.NotNull(Assert.Single(await probe.ReceiveAsync(1)).Result);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_UnaryNextRequestSentOnTheAnswer_NeverBusy()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        BatcherCalls.SlowCompletionsOf(clientId);

        for (var i = 0; i < 5; i++)
        {
            // Each goes the moment the previous one's answer arrives, as a unary client's would.
            var admission = await session.SubmitAsync(Chunk(probe, $"u{i}", "s", start: i == 0, end: i == 4, ordered: false));
            Assert.True(admission.Accepted, $"u{i}: {admission.Error?.Message}");
            Assert.NotNull(Assert.Single(await probe.ReceiveAsync(1)).Result);
        }

        // A start right after the end's answer begins the sequence again.
        Assert.True((await session.SubmitAsync(Chunk(probe, "again", "s", start: true, ordered: false))).Accepted);
        Assert.NotNull(Assert.Single(await probe.ReceiveAsync(1)).Result);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_RunningRequestsCompletionLost_ReclaimedAfterItsDeadlineAndGrace()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        BatcherCalls.LoseCompletionsOf(clientId);
        var first = Chunk(probe, "l0", "s", start: true, ordered: false) with { Timeout = TimeSpan.FromSeconds(1) };
        Assert.True((await session.SubmitAsync(first)).Accepted);
        Assert.NotNull(Assert.Single(await probe.ReceiveAsync(1)).Result);
        Assert.Equal(ErrorCode.SequenceBusy, (await session.SubmitAsync(Chunk(probe, "l1", "s", start: false, ordered: false))).Error?.Code);

        await SequenceClusterFixture.AdvanceAsync(SequenceClusterFixture.OrphanGrace + TimeSpan.FromSeconds(2));

        // Reclaimed: the sequence takes requests again (idle all that time, it expired at its batcher: a start begins it anew).
        var restart = await session.SubmitAsync(Chunk(probe, "l2", "s", start: true, ordered: false));
        Assert.True(restart.Accepted, restart.Error?.Message);
        Assert.NotNull(Assert.Single(await probe.ReceiveAsync(1)).Result);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Submit_StartsPastTheClientsLimit_RefusedUntilOneEndsOrIdlesOut()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out _);
        var open = Enumerable.Range(0, SequenceClusterFixture.MaxSequences).Select(i => $"s{i}").ToList();
        foreach (var sequence in open)
        {
            Assert.True((await session.SubmitAsync(Chunk(probe, $"start-{sequence}", sequence, start: true))).Accepted);
        }

        await probe.ReceiveAsync(open.Count);
        await Eventually.UntilAsync(session.GetStatusAsync, s => s.Backlog == 0, what: "the starts completed");

        var over = await session.SubmitAsync(Chunk(probe, "start-x", "x", start: true));
        Assert.Equal(ErrorCode.BadRequest, over.Error?.Code);
        Assert.Contains($"{SequenceClusterFixture.MaxSequences} sequences", over.Error!.Message, StringComparison.Ordinal);

        // Ending one makes room.
        Assert.True((await session.SubmitAsync(Chunk(probe, "end-s0", "s0", start: false, end: true))).Accepted);
        await probe.ReceiveAsync(1);
        await Eventually.UntilAsync(session.GetStatusAsync, s => s.Sequences == open.Count - 1, what: "s0 ended");
        Assert.True((await session.SubmitAsync(Chunk(probe, "start-x2", "x", start: true))).Accepted);
        await probe.ReceiveAsync(1);
        Assert.Equal(ErrorCode.BadRequest, (await session.SubmitAsync(Chunk(probe, "start-y", "y", start: true))).Error?.Code);

        // Sequences idle past the model's idle timeout expired at their batcher: they no longer count.
        await SequenceClusterFixture.AdvanceAsync(TimeSpan.FromSeconds(61));
        Assert.True((await session.SubmitAsync(Chunk(probe, "start-y2", "y", start: true))).Accepted);
        await probe.ReceiveAsync(1);
        Assert.Equal(1, (await session.GetStatusAsync()).Sequences);
        await session.CloseAsync();
    }

    [Fact]
    public async Task Close_WhileAStartIsOnItsWayToTheBatcher_EndsTheSequenceOnceItIsAdmitted()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);
        var batcher = fixture.Client.GetGrain<IBatcherGrain>(fixture.BatcherKeyFor(SequenceClusterFixture.Held));
        var before = (await batcher.GetStatusAsync()).Sequences;
        var (arrived, release) = BatcherCalls.GateNextEnqueueOf(clientId);

        var submit = session.SubmitAsync(Chunk(probe, "c0", "s", start: true) with { Model = SequenceClusterFixture.Held });
        await arrived.WaitAsync(TimeSpan.FromSeconds(15));
        var close = session.CloseAsync();
        await Eventually.UntilAsync(() => Task.FromResult(BatcherCalls.EndedFor(clientId)), e => e.Count == 1, what: "the close ended the sequence at the batcher");
        release.SetResult();

        // Admitted after its sequence was ended: the session ends it again, and its caller hears the session closed.
        Assert.Equal(ErrorCode.BadRequest, (await submit).Error?.Code);
        await close;
        Assert.Equal(2, BatcherCalls.EndedFor(clientId).Count);
        await Eventually.UntilAsync(batcher.GetStatusAsync, s => s.Sequences == before, what: "the batcher holds none of the closed session's sequences");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Submit_SequenceOnAModelWithoutState_InvalidInput(bool start)
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession(out var clientId);

        var admission = await session.SubmitAsync(probe.Request("e0") with { Sequence = new SequenceControl("s", start, false, true) });

        Assert.Equal(ErrorCode.InvalidInput, admission.Error?.Code);
        Assert.Contains("echo", admission.Error!.Message, StringComparison.Ordinal);
        Assert.Empty(BatcherCalls.EnqueuedBy(clientId));
        await session.CloseAsync();
    }

    /// <summary>A chunk of the stateful model's (<see cref="SequenceClusterFixture.Alone"/>): samples <paramref name="value"/> and one more.</summary>
    private static InferRequest Chunk(DeliveryProbe probe, string id, string sequence, bool start, bool end = false, bool ordered = true, float value = 1)
        => probe.Request(id, SequenceClusterFixture.Alone) with
        {
            Inputs = [new NamedTensor("input", Tensors.Floats([1, 2], value, value + 1)), new NamedTensor("sr", Tensors.Longs([], SequenceClusterFixture.SampleRate))],
            Sequence = new SequenceControl(sequence, start, end, ordered),
        };
}
