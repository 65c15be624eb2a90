using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Batching;

[Collection(ClusterCollection.Name)]
public sealed class BatcherGrainTests(ClusterFixture fixture)
{
    [Fact]
    public async Task Enqueue_MaxBatchSizeQueued_FlushesWithoutWaiting()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        var runBefore = (await fixture.Batcher("size4").GetStatusAsync()).BatchesRun;

        for (var i = 0; i < 3; i++)
        {
            Assert.True((await session.SubmitAsync(probe.Request($"a{i}", "size4"))).Accepted);
        }

        // Three of four: nothing runs, however long the clock stands still.
        var status = await fixture.Batcher("size4").GetStatusAsync();
        Assert.Equal(3, status.Queued);
        Assert.Equal(runBefore, status.BatchesRun);

        // The fourth fills the batch: it runs at once, with no clock movement at all.
        Assert.True((await session.SubmitAsync(probe.Request("a3", "size4"))).Accepted);
        var deliveries = await probe.ReceiveAsync(4);
        Assert.All(deliveries, d => Assert.Equal(4, d.Result!.Timing.BatchSize));
        Assert.Equal(["a0", "a1", "a2", "a3"], deliveries.Select(d => d.RequestId).Order());

        // One observer call for the whole batch, not one per request.
        Assert.Single(probe.Batches);

        // Eight more make exactly two full batches.
        for (var i = 4; i < 12; i++)
        {
            Assert.True((await session.SubmitAsync(probe.Request($"a{i}", "size4"))).Accepted);
        }

        deliveries = await probe.ReceiveAsync(8);
        Assert.All(deliveries, d => Assert.Equal(4, d.Result!.Timing.BatchSize));
        Assert.Equal(0, (await fixture.Batcher("size4").GetStatusAsync()).Queued);
    }

    [Fact]
    public async Task Enqueue_FewerThanMaxBatchSize_FlushesWhenMaxWaitPasses()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();

        for (var i = 0; i < 3; i++)
        {
            Assert.True((await session.SubmitAsync(probe.Request($"t{i}", "time50"))).Accepted);
        }

        await ClusterFixture.AdvanceAsync(TimeSpan.FromMilliseconds(49));
        var status = await fixture.Batcher("time50").GetStatusAsync();
        Assert.Equal(3, status.Queued);
        Assert.Equal(0, status.BatchesRun);

        await ClusterFixture.AdvanceAsync(TimeSpan.FromMilliseconds(1));
        var deliveries = await probe.ReceiveAsync(3);
        Assert.All(deliveries, d => Assert.Equal(3, d.Result!.Timing.BatchSize));
        Assert.All(deliveries, d => Assert.Equal(50, d.Result!.Timing.QueueMs, precision: 0));
        Assert.Single(probe.Batches);
        status = await fixture.Batcher("time50").GetStatusAsync();
        Assert.Equal(0, status.Queued);
        Assert.Equal([3], status.RecentBatchSizes.ToArray());
    }

    [Fact]
    public async Task Result_Echo_ReturnsInputsAndVersion()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        var request = probe.Request("e1", value: 7);

        Assert.True((await session.SubmitAsync(request)).Accepted);
        var delivery = Assert.Single(await probe.ReceiveAsync(1));

        Assert.Null(delivery.Error);
        Assert.Equal("1", delivery.Result!.ModelVersion);
        var output = Assert.Single(delivery.Result.Outputs);
        Assert.Equal("x", output.Name);
        Assert.Equal(request.Inputs[0].Tensor.Data.ToArray(), output.Tensor.Data.ToArray());
        Assert.Equal(request.Inputs[0].Tensor.Shape.ToArray(), output.Tensor.Shape.ToArray());
    }

    [Fact]
    public async Task Enqueue_InputNotMatchingDeclaration_RefusedWithInvalidInputNamingIt()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        var wrongShape = probe.Request("w1", "typed") with
        {
            Inputs = [new NamedTensor("x", Tensors.Floats([1, 3], 1, 2, 3))],
        };

        var admission = await session.SubmitAsync(wrongShape);

        Assert.Equal(ErrorCode.InvalidInput, admission.Error?.Code);
        Assert.Contains("'x'", admission.Error!.Message, StringComparison.Ordinal);
        Assert.Equal(0, (await session.GetStatusAsync()).Backlog);

        // A well-formed request to the same model is served.
        Assert.True((await session.SubmitAsync(probe.Request("w2", "typed"))).Accepted);
        Assert.Null(Assert.Single(await probe.ReceiveAsync(1)).Error);
    }

    [Fact]
    public async Task Enqueue_QueueFull_RefusedOverloadedWithRetryAfter()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        Assert.True((await session.SubmitAsync(probe.Request("q1", "small-queue"))).Accepted);
        Assert.True((await session.SubmitAsync(probe.Request("q2", "small-queue"))).Accepted);

        var admission = await session.SubmitAsync(probe.Request("q3", "small-queue"));

        Assert.Equal(ErrorCode.Overloaded, admission.Error?.Code);
        Assert.True(admission.Error!.RetryAfterMs > 0);
        Assert.Equal(2, (await session.GetStatusAsync()).Backlog);
        await session.CloseAsync();
        Assert.Equal(0, (await fixture.Batcher("small-queue").GetStatusAsync()).Queued);
    }

    [Fact]
    public async Task Deadline_PassesWhileQueued_EndsWithDeadlineExceeded()
    {
        var probe = await DeliveryProbe.SubscribeAsync(fixture.Client);
        var session = fixture.NewSession();
        Assert.True((await session.SubmitAsync(probe.Request("d1", "hold-deadline", TimeSpan.FromMilliseconds(100)))).Accepted);
        Assert.True((await session.SubmitAsync(probe.Request("d2", "hold-deadline", TimeSpan.FromSeconds(5)))).Accepted);

        await ClusterFixture.AdvanceAsync(TimeSpan.FromMilliseconds(100));

        var expired = Assert.Single(await probe.ReceiveAsync(1));
        Assert.Equal("d1", expired.RequestId);
        Assert.Equal(ErrorCode.DeadlineExceeded, expired.Error?.Code);
        await Eventually.UntilAsync(() => session.GetStatusAsync(), s => s.Backlog == 1, what: "the expired request's backlog slot is released");
        Assert.Equal(1, (await fixture.Batcher("hold-deadline").GetStatusAsync()).Queued);
        Assert.Equal(0, probe.Unread);
        await session.CloseAsync();
    }
}
