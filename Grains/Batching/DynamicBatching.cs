using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// Dynamic batching for batch models: a batch is cut when <c>MaxBatchSize</c> rows are queued, or when the oldest request
/// has waited <c>MaxWait</c> (at once when it is zero), and only while fewer than <c>MaxConcurrentBatches</c> are on the
/// device; a finished batch has the next dispatched at once. Requests checked against different versions (a rollout
/// just committed) run as separate batches.
/// </summary>
internal sealed class DynamicBatching(BatcherContext context, ModelOptions options, IBatchModel model) : IBatchScheduler
{
    private readonly TimeProvider _time = context.Time;
    private readonly DeviceBatches _batches = new(context);
    private ModelOptions _options = options;
    private IInferenceModel _serving = model;

    public int Running => _batches.Running;

    public int Active => 0;

    public bool Idle => _batches.Idle;

    public BatchStats Stats => _batches.Stats;

    public void Serve(ModelOptions options, IInferenceModel model) => (_options, _serving) = (options, model);

    public SchedulerCheck Check(IInferenceModel model, BatchItem item)
    {
        if (model is not IBatchModel)
        {
            return BatchSchedulers.ChangedKind(context.Key.Model);
        }

        if (item.Request.Sequence is not null)
        {
            return BatchSchedulers.Stateless(context.Key.Model);
        }

        var check = model.Check(item.Request);
        return new SchedulerCheck(check.Error, check.Rows);
    }

    public double ExpectedWaitMs(long rowsAhead, int rows) => _batches.ExpectedWaitMs(rowsAhead, rows, _options, _serving);

    public DateTimeOffset Dispatch(DateTimeOffset now)
    {
        var queue = context.Queue;
        while (queue.Count > 0 && _batches.Running < _options.MaxConcurrentBatches)
        {
            if (queue.Rows < _options.MaxBatchSize && _time.GetElapsedTime(queue.OldestEnqueuedAt) < _options.MaxWait)
            {
                break;
            }

            _batches.StartByVersion(queue.TakeBatch(_options.MaxBatchSize));
        }

        // While the device has room, the oldest request's MaxWait running out is the next thing to wake for.
        return queue.Count > 0 && _batches.Running < _options.MaxConcurrentBatches
            ? now + (_options.MaxWait - _time.GetElapsedTime(queue.OldestEnqueuedAt))
            : DateTimeOffset.MaxValue;
    }

    public void Cancelled()
    {
        // A running request's batch-mates still need its batch: it runs, and its result is dropped.
    }

    public List<QueuedRequest> Abort() => [];

    public Task WhenIdleAsync() => _batches.WhenIdleAsync();
}
