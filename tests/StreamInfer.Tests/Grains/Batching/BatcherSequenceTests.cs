using StreamInfer.Tests.Grains.Models.Onnx;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Batching;

/// <summary>Stateful sequences through the batcher grain of a test cluster, on the stateful <c>vad</c> test model.</summary>
[Collection(ClusterCollection.Name)]
public sealed class BatcherSequenceTests(ClusterFixture fixture)
{
    [Fact]
    public async Task EndSequences_FreesTheSequence_ItsNextRequestIsRefusedUnknown()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var client = $"test-{Guid.NewGuid():N}";
        var batcher = fixture.Batcher("vad");
        Assert.Null(await batcher.EnqueueAsync(Item(probe, client, "r0", "a", start: true)));
        Assert.Null(Assert.Single(await probe.ReceiveAsync(1)).Error);
        Assert.Null(await batcher.EnqueueAsync(Item(probe, client, "r1", "a", start: false)));
        Assert.Null(Assert.Single(await probe.ReceiveAsync(1)).Error);

        await batcher.EndSequencesAsync(client, ["a"]);

        Assert.Equal(ErrorCode.UnknownSequence, (await batcher.EnqueueAsync(Item(probe, client, "r2", "a", start: false)))?.Code);
        Assert.Null(await batcher.EnqueueAsync(Item(probe, client, "r3", "a", start: true)));
        Assert.Null(Assert.Single(await probe.ReceiveAsync(1)).Error);
        await batcher.EndSequencesAsync(client, ["a"]);
    }

    [Fact]
    public async Task IdleTimeout_PassesOnTheClock_SequenceExpiresWithNoRequestToWakeIt()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var client = $"test-{Guid.NewGuid():N}";
        var batcher = fixture.Batcher("vad");
        Assert.Null(await batcher.EnqueueAsync(Item(probe, client, "r0", "idle", start: true)));
        Assert.Null(Assert.Single(await probe.ReceiveAsync(1)).Error);

        // The default idle timeout, 60 s, on the cluster's virtual clock: the batcher's own timer expires the sequence.
        await ClusterFixture.AdvanceAsync(TimeSpan.FromSeconds(60));

        // The timer's wake-up was queued on the batcher before this call reached it.
        Assert.Equal(ErrorCode.UnknownSequence, (await batcher.EnqueueAsync(Item(probe, client, "r1", "idle", start: false)))?.Code);
    }

    private static BatchItem Item(DeliveryProbe probe, string client, string id, string sequence, bool start)
    {
        var now = ClusterFixture.Time.GetUtcNow();
        var request = probe.Request(id, "vad") with
        {
            Inputs =
            [
                new NamedTensor("input", Tensors.Floats([1, 2], 1, 2)),
                new NamedTensor("sr", BatchAxisTests.Int64([], 16000)),
            ],
            Sequence = new SequenceControl(sequence, start, false),
        };
        return new BatchItem(client, request, now, now + TimeSpan.FromMinutes(10));
    }
}
