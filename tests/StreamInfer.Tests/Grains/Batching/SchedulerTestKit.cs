using StreamInfer.Tests.Infrastructure;
using System.Collections.Immutable;
using System.Threading.Channels;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using StreamInfer.Grains.Batching;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;

namespace StreamInfer.Tests.Grains.Batching;

/// <summary>
/// A scheduler on its own: a queue, a real device thread, a fake clock, and a host that records what the scheduler
/// hands over. Test code calls the scheduler only while nothing of it runs (before a batch is released, or after its
/// outcomes arrived), as the grain's single thread would.
/// </summary>
internal sealed class SchedulerTestKit : ISchedulerHost, IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private readonly Channel<RequestOutcome> _outcomes = Channel.CreateUnbounded<RequestOutcome>();

    public SchedulerTestKit(IInferenceModel model, ModelOptions options)
    {
        Model = model;
        Options = options;
        Lease = new ModelLease(model, _ => { });
        Queue = new RequestQueue(options.PriorityLevels);
        Device = new DeviceWorker("cpu-scheduler-test", DeviceKind.Cpu, null, 64, NullLogger.Instance);
        Scheduler = BatchSchedulers.For(model, options, new BatcherContext(new BatcherKey(model.Name, "silo", "cpu0"), Queue, Device, Time, this, TestMetrics.Create(), NullLogger.Instance))!;
        Admission = new AdmissionPolicy(model.Name, Queue, Scheduler, Time);
    }

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public IInferenceModel Model { get; }

    public ModelOptions Options { get; }

    public ModelLease Lease { get; }

    public RequestQueue Queue { get; }

    public DeviceWorker Device { get; }

    public IBatchScheduler Scheduler { get; }

    public AdmissionPolicy Admission { get; }

    /// <summary>Times the scheduler asked its host to pump.</summary>
    public int Pumps { get; private set; }

    /// <summary>Admits a request through the admission policy, then (unless told not to) dispatches.</summary>
    public InferError? Submit(string id, int? priority = null, TimeSpan? timeout = null, string? prompt = null, GenerationOptions? generation = null, bool dispatch = true)
    {
        var request = new InferRequest(id, Model.Name, [], prompt, null, "fe", priority, generation, new NoObserver());
        var now = Time.GetUtcNow();
        var refused = Admission.Admit(new BatchItem("client", request, now, now + (timeout ?? TimeSpan.FromMinutes(1))), Lease, Options, out var stale);
        Assert.False(stale);
        if (dispatch)
        {
            Dispatch();
        }

        return refused;
    }

    /// <summary>Admits <paramref name="request"/> from <paramref name="client"/> (an observer is added), then dispatches;
    /// <paramref name="lease"/> is the serving version (default <see cref="Lease"/>).</summary>
    public InferError? Submit(InferRequest request, string client = "client", TimeSpan? timeout = null, bool dispatch = true, ModelLease? lease = null)
    {
        var now = Time.GetUtcNow();
        var item = new BatchItem(client, request with { ReplyObserver = new NoObserver() }, now, now + (timeout ?? TimeSpan.FromMinutes(1)));
        var refused = Admission.Admit(item, lease ?? Lease, Options, out var stale);
        Assert.False(stale);
        if (dispatch)
        {
            Dispatch();
        }

        return refused;
    }

    public DateTimeOffset Dispatch()
    {
        var now = Time.GetUtcNow();
        if (Queue.Expire(now) is { } expired)
        {
            foreach (var q in expired)
            {
                q.End();
            }

            _ = Finish([.. expired.Select(q => new RequestOutcome(q, new Delivery(q.Item.ClientId, q.Item.Request.RequestId, null, new InferError(ErrorCode.DeadlineExceeded, "expired"))))], now, false);
        }

        return Scheduler.Dispatch(now);
    }

    /// <summary>The next <paramref name="count"/> outcomes handed over, failing after a deadline.</summary>
    public async Task<List<RequestOutcome>> NextAsync(int count)
    {
        using var cts = new CancellationTokenSource(Deadline);
        var received = new List<RequestOutcome>(count);
        while (received.Count < count)
        {
            received.Add(await _outcomes.Reader.ReadAsync(cts.Token));
        }

        return received;
    }

    /// <summary>Outcomes handed over and not yet read.</summary>
    public int Unread => _outcomes.Reader.Count;

    void ISchedulerHost.Pump()
    {
        Pumps++;
        Dispatch();
    }

    /// <summary>Called with each outcome as it is handed over, before the scheduler reads the device's next step.</summary>
    public Action<RequestOutcome>? OnOutcome { get; set; }

    public Task Finish(IReadOnlyList<RequestOutcome> outcomes, DateTimeOffset producedAt, bool ordered)
    {
        foreach (var outcome in outcomes)
        {
            OnOutcome?.Invoke(outcome);
            if (outcome.Delivery.IsEnd)
            {
                Queue.Forget(outcome.Request);
            }

            _outcomes.Writer.TryWrite(outcome);
        }

        return Task.CompletedTask;
    }

    void ISchedulerHost.KeepAlive()
    {
    }

    public void Dispose() => Device.Dispose();

    internal sealed class NoObserver : IDeliveryObserver
    {
        public Task DeliverAsync(DeliveryBatch batch) => Task.CompletedTask;
    }
}

/// <summary>A batch model that echoes nothing, records each batch's request ids, and can hold the device until released.</summary>
internal sealed class RecordingModel(double warmBatchMs = 0) : IBatchModel
{
    private readonly ManualResetEventSlim _open = new(true);

    public string Name => "rec";

    public string Version => "1";

    public ImmutableArray<TensorSpec> Inputs => [];

    public ImmutableArray<TensorSpec> Outputs => [];

    public double WarmBatchMs => warmBatchMs;

    /// <summary>Each batch run, as its request ids in batch order.</summary>
    public List<string[]> Batches { get; } = [];

    /// <summary>From now on a batch waits on the device until <see cref="Release"/>.</summary>
    public void Hold() => _open.Reset();

    /// <summary>Lets held batches (and every later one) run.</summary>
    public void Release() => _open.Set();

    public RequestCheck Check(InferRequest request) => new(null, 1);

    public IReadOnlyList<ItemOutcome> Run(IReadOnlyList<InferRequest> batch)
    {
        lock (Batches)
        {
            Batches.Add([.. batch.Select(r => r.RequestId)]);
        }

        _open.Wait();
        return [.. batch.Select(_ => ItemOutcome.Ok([]))];
    }

    public void Dispose() => _open.Dispose();
}
