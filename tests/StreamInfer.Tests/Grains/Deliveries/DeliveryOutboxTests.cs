using System.Threading.Channels;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using StreamInfer.Grains.Deliveries;

namespace StreamInfer.Tests.Grains.Deliveries;

/// <summary>The outbox on its own: a fake publisher that the test answers call by call, and a fake clock.</summary>
public sealed class DeliveryOutboxTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private static readonly DeliveryRetry Retry = new(
        TimeSpan.FromMilliseconds(100),
        TimeSpan.FromMilliseconds(400),
        TimeSpan.FromSeconds(1),
        3,
        TimeSpan.FromSeconds(30));

    private readonly FakeTimeProvider _time = new();
    private readonly FakePublisher _publisher = new() { Hold = true };

    private static DeliveryTarget To(string frontend) => new(frontend, new NullObserver());

    private static Delivery Token(string request, int index) => new("client", request, null, null, new GeneratedToken(index, index, "x"));

    private DeliveryOutbox NewOutbox() => new(_publisher, Retry, _time, NullLogger.Instance);

    [Fact]
    public async Task SendAsync_TwoDestinations_OneBatchEachInTheOrderGiven()
    {
        var outbox = NewOutbox();
        var sent = outbox.SendAsync([(To("fe1"), Token("a", 0)), (To("fe2"), Token("b", 0)), (To("fe1"), Token("c", 0))], DateTimeOffset.UnixEpoch, ordered: false);

        var calls = new[] { await _publisher.NextAsync(), await _publisher.NextAsync() };
        foreach (var call in calls)
        {
            call.Done.SetResult();
        }

        await sent.WaitAsync(Deadline);
        var fe1 = Assert.Single(calls, c => c.To.Frontend == "fe1");
        Assert.Equal(["a", "c"], fe1.Batch.Items.Select(d => d.RequestId));
        Assert.Equal(["b"], Assert.Single(calls, c => c.To.Frontend == "fe2").Batch.Items.Select(d => d.RequestId));
        Assert.True(outbox.Idle);
    }

    [Fact]
    public async Task SendAsync_Ordered_NextBatchToTheSameFrontendWaitsForThePrevious()
    {
        var outbox = NewOutbox();
        var first = outbox.SendAsync([(To("fe"), Token("a", 0))], DateTimeOffset.UnixEpoch, ordered: true);
        var second = outbox.SendAsync([(To("fe"), Token("a", 1))], DateTimeOffset.UnixEpoch, ordered: true);
        var elsewhere = outbox.SendAsync([(To("other"), Token("b", 0))], DateTimeOffset.UnixEpoch, ordered: true);

        var call1 = await _publisher.NextAsync();
        var call2 = await _publisher.NextAsync();
        Assert.Equal(0, call1.Batch.Items[0].Token!.Index);
        Assert.Equal("other", call2.To.Frontend);
        Assert.False(_publisher.Pending);
        Assert.False(outbox.Idle);

        call1.Done.SetResult();
        var call3 = await _publisher.NextAsync();
        Assert.Equal(1, call3.Batch.Items[0].Token!.Index);
        call2.Done.SetResult();
        call3.Done.SetResult();
        await Task.WhenAll(first, second, elsewhere).WaitAsync(Deadline);
        Assert.True(outbox.Idle);
    }

    [Fact]
    public async Task SendAsync_Refused_RetriedWithBackoffUntilDelivered()
    {
        _publisher.Hold = false;
        // Without the test's synchronization context, a retry runs inside the clock's advance that makes it due.
        SynchronizationContext.SetSynchronizationContext(null);
        var outbox = NewOutbox();
        _publisher.Refuse = new TimeoutException("gateway gone");
        var sent = outbox.SendAsync([(To("fe"), Token("a", 0))], DateTimeOffset.UnixEpoch, ordered: false);
        Assert.Equal(1, _publisher.Attempts);

        _time.Advance(TimeSpan.FromMilliseconds(99));
        Assert.Equal(1, _publisher.Attempts);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(2, _publisher.Attempts);

        // The wait doubles.
        _publisher.Refuse = null;
        _time.Advance(TimeSpan.FromMilliseconds(199));
        Assert.Equal(2, _publisher.Attempts);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(3, _publisher.Attempts);

        await sent.WaitAsync(Deadline);
        Assert.True(outbox.Idle);
    }

    [Fact]
    public async Task SendAsync_FrontendFailedEveryRetry_LaterBatchesDroppedUntilItsTimeIsUp()
    {
        _publisher.Hold = false;
        SynchronizationContext.SetSynchronizationContext(null);
        var outbox = NewOutbox();
        _publisher.Refuse = new TimeoutException("no such frontend");
        var sent = outbox.SendAsync([(To("gone"), Token("a", 0))], DateTimeOffset.UnixEpoch, ordered: false);
        foreach (var wait in (int[])[100, 200, 400, 400])
        {
            _time.Advance(TimeSpan.FromMilliseconds(wait));
        }

        // Past the budget (1 s) and the minimum attempts: given up, and remembered.
        await sent.WaitAsync(Deadline);
        Assert.Equal(5, _publisher.Attempts);
        await outbox.SendAsync([(To("gone"), Token("a", 1))], DateTimeOffset.UnixEpoch, ordered: true).WaitAsync(Deadline);
        Assert.Equal(5, _publisher.Attempts);

        // Other frontends are not affected; the gone one is tried again once its time is up.
        _publisher.Refuse = null;
        await outbox.SendAsync([(To("fine"), Token("b", 0))], DateTimeOffset.UnixEpoch, ordered: false).WaitAsync(Deadline);
        Assert.Equal(6, _publisher.Attempts);
        _time.Advance(TimeSpan.FromSeconds(30));
        await outbox.SendAsync([(To("gone"), Token("a", 2))], DateTimeOffset.UnixEpoch, ordered: false).WaitAsync(Deadline);
        Assert.Equal(7, _publisher.Attempts);
        Assert.True(outbox.Idle);
    }

    private sealed record Call(DeliveryTarget To, DeliveryBatch Batch, TaskCompletionSource Done);

    /// <summary>Counts calls; refuses each at once with <see cref="Refuse"/>, or, with <see cref="Hold"/>, hands it
    /// to the test to complete, or else takes it at once.</summary>
    private sealed class FakePublisher : IDeliveryPublisher
    {
        private readonly Channel<Call> _calls = Channel.CreateUnbounded<Call>();
        private int _attempts;

        public Exception? Refuse { get; set; }

        public bool Hold { get; set; }

        public int Attempts => Volatile.Read(ref _attempts);

        public bool Pending => _calls.Reader.Count > 0;

        public Task PublishAsync(DeliveryTarget to, DeliveryBatch batch)
        {
            Interlocked.Increment(ref _attempts);
            if (Refuse is { } refused)
            {
                return Task.FromException(refused);
            }

            if (!Hold)
            {
                return Task.CompletedTask;
            }

            var call = new Call(to, batch, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            _calls.Writer.TryWrite(call);
            return call.Done.Task;
        }

        public async Task<Call> NextAsync() => await _calls.Reader.ReadAsync().AsTask().WaitAsync(Deadline);
    }

    private sealed class NullObserver : IDeliveryObserver
    {
        public Task DeliverAsync(DeliveryBatch batch) => Task.CompletedTask;
    }
}
