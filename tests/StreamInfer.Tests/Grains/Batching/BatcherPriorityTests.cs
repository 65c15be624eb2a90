using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Batching;

[Collection(ClusterCollection.Name)]
public sealed class BatcherPriorityTests(ClusterFixture fixture)
{
    [Fact]
    public async Task Enqueue_HigherPriorityArrivesLater_BatchedFirst()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        // A full batch of two occupies the device for 2 s...
        Assert.True((await session.SubmitAsync(probe.Request("a1", "prio"))).Accepted);
        Assert.True((await session.SubmitAsync(probe.Request("a2", "prio"))).Accepted);
        await Eventually.UntilAsync(() => fixture.Batcher("prio").GetStatusAsync(), s => s.Running == 1 && s.Queued == 0, what: "the first batch occupies the device");

        // ...while two low-priority requests queue, then two high-priority ones.
        foreach (var (id, priority) in new[] { ("low1", 0), ("low2", 0), ("high1", 2), ("high2", 2) })
        {
            Assert.True((await session.SubmitAsync(probe.Request(id, "prio") with { Priority = priority })).Accepted);
        }

        // All four wait behind the first batch, so the next batch is chosen among them all.
        var queued = await fixture.Batcher("prio").GetStatusAsync();
        Assert.True(queued is { Running: 1, Queued: 4 }, $"the four requests should wait behind the first batch; status {queued}");

        var order = (await probe.ReceiveAsync(6, TimeSpan.FromSeconds(30))).Select(d => d.RequestId).ToList();
        Assert.Equal(["a1", "a2"], order[..2].Order());
        Assert.Equal(["high1", "high2"], order[2..4]);
        Assert.Equal(["low1", "low2"], order[4..]);
    }

    [Fact]
    public async Task Submit_PriorityOutsideTheModelsLevels_InvalidInput()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var admission = await fixture.NewSession().SubmitAsync(probe.Request("p", "prio") with { Priority = 3 });

        Assert.Equal(ErrorCode.InvalidInput, admission.Error?.Code);
        Assert.Contains("levels 0 to 2", admission.Error!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Submit_NoTimeout_ModelsDefaultDeadlineApplies()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();

        var modelDefault = await session.SubmitAsync(probe.Request("d1", "short-deadline"));
        var sessionDefault = await session.SubmitAsync(probe.Request("d2", "echo"));
        var own = await session.SubmitAsync(probe.Request("d3", "short-deadline", timeout: TimeSpan.FromSeconds(9)));

        Assert.Equal(TimeSpan.FromSeconds(2), modelDefault.Timeout);
        Assert.Equal(TimeSpan.FromMinutes(10), sessionDefault.Timeout);
        Assert.Equal(TimeSpan.FromSeconds(9), own.Timeout);
        await probe.ReceiveAsync(3);
    }

    [Fact]
    public async Task Submit_OnnxModelWithBadShapeOrBadValue_OnlyThatRequestFails()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        InferRequest Lookup(string id, long[] shape, params long[] ids)
        {
            var data = new byte[ids.Length * 8];
            Buffer.BlockCopy(ids, 0, data, 0, data.Length);
            return new InferRequest(id, "lookup", [new NamedTensor("ids", new Tensor(TensorElementType.Int64, [.. shape], data, []))], null, null, probe.ReplyTo, ReplyObserver: probe.Observer);
        }

        var submissions = await Task.WhenAll(
            session.SubmitAsync(Lookup("good1", [1, 1], 2)),
            session.SubmitAsync(Lookup("bad-shape", [1, 2], 2, 3)),
            session.SubmitAsync(Lookup("bad-value", [1, 1], 99)),
            session.SubmitAsync(Lookup("good2", [2, 1], 4, 5)));

        Assert.True(submissions[0].Accepted);
        Assert.Equal(ErrorCode.InvalidInput, submissions[1].Error?.Code);
        Assert.Contains("'ids'", submissions[1].Error!.Message, StringComparison.Ordinal);
        Assert.True(submissions[2].Accepted);
        Assert.True(submissions[3].Accepted);

        var deliveries = (await probe.ReceiveAsync(3)).ToDictionary(d => d.RequestId);
        Assert.Equal(ErrorCode.InvalidInput, deliveries["bad-value"].Error?.Code);
        Assert.Equal([1L, 1, 2], deliveries["good1"].Result!.Outputs[0].Tensor.Shape.ToArray());
        Assert.Equal([2L, 1, 2], deliveries["good2"].Result!.Outputs[0].Tensor.Shape.ToArray());
        Assert.Equal("1", deliveries["good2"].Result!.ModelVersion);
    }
}
