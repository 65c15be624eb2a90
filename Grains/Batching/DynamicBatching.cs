using Microsoft.Extensions.Logging;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// Dynamic batching for batch models: a batch is cut when <c>MaxBatchSize</c> rows are queued, or when the oldest request
/// has waited <c>MaxWait</c> (at once when it is zero), and only while fewer than <c>MaxConcurrentBatches</c> are on the
/// device; a finished batch has the next dispatched at once. Requests checked against different versions (a rollout
/// just committed) run as separate batches.
/// </summary>
internal sealed partial class DynamicBatching(BatcherContext context, ModelOptions options, IBatchModel model) : IBatchScheduler
{
    private readonly TimeProvider _time = context.Time;
    private ModelOptions _options = options;
    private IInferenceModel _serving = model;
    private int _running;

    // Batches dispatched whose results are not yet handed over.
    private int _unfinished;
    private TaskCompletionSource? _idle;

    // Admission's estimate of a batch's compute time: recent batches', the warm-up's until one has run.
    private double _recentBatchMs;

    public int Running => _running;

    public int Active => 0;

    public bool Idle => _unfinished == 0;

    public BatchStats Stats { get; } = new();

    public void Serve(ModelOptions options, IInferenceModel model) => (_options, _serving) = (options, model);

    public SchedulerCheck Check(IInferenceModel model, BatchItem item)
    {
        if (model is not IBatchModel)
        {
            return BatchSchedulers.ChangedKind(context.Key.Model);
        }

        var check = model.Check(item.Request);
        return new SchedulerCheck(check.Error, check.Rows);
    }

    /// <summary>The batches the queued rows fill, plus those on the device, at the recent time per batch, spread over the
    /// batches that may run at once. It assumes full batches, so it errs towards admitting.</summary>
    public double ExpectedWaitMs(long rowsAhead, int rows)
    {
        var perBatch = Stats.BatchesRun > 0 ? _recentBatchMs : _serving.WarmBatchMs;
        var batches = Math.Ceiling((double)(rowsAhead + rows) / _options.MaxBatchSize) + _running;
        return batches * perBatch / _options.MaxConcurrentBatches;
    }

    public DateTimeOffset Dispatch(DateTimeOffset now)
    {
        var queue = context.Queue;
        while (queue.Count > 0 && _running < _options.MaxConcurrentBatches)
        {
            if (queue.Rows < _options.MaxBatchSize && _time.GetElapsedTime(queue.OldestEnqueuedAt) < _options.MaxWait)
            {
                break;
            }

            var batch = queue.TakeBatch(_options.MaxBatchSize);
            var lease = batch[0].Lease;
            if (batch.TrueForAll(q => q.Lease == lease))
            {
                Start(batch);
                continue;
            }

            foreach (var group in batch.GroupBy(q => q.Lease))
            {
                Start(group.ToList());
            }
        }

        // While the device has room, the oldest request's MaxWait running out is the next thing to wake for.
        return queue.Count > 0 && _running < _options.MaxConcurrentBatches
            ? now + (_options.MaxWait - _time.GetElapsedTime(queue.OldestEnqueuedAt))
            : DateTimeOffset.MaxValue;
    }

    public void Cancelled()
    {
        // A running request's batch-mates still need its batch: it runs, and its result is dropped.
    }

    public List<QueuedRequest> Abort() => [];

    public Task WhenIdleAsync()
    {
        if (_unfinished == 0)
        {
            return Task.CompletedTask;
        }

        _idle ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return _idle.Task;
    }

    private void Start(List<QueuedRequest> batch)
    {
        _running++;
        _unfinished++;
        _ = RunAsync(batch);
    }

    private async Task RunAsync(List<QueuedRequest> batch)
    {
        try
        {
            await context.Host.Finish(await RunOnDeviceAsync(batch), _time.GetUtcNow(), ordered: false);
        }
        finally
        {
            if (--_unfinished == 0 && _idle is { } idle)
            {
                _idle = null;
                idle.TrySetResult();
            }
        }
    }

    /// <summary>Runs a batch; returns its requests' outcomes (none for those cancelled) once it has let the next batch go.</summary>
    private async Task<List<RequestOutcome>> RunOnDeviceAsync(List<QueuedRequest> batch)
    {
        var requests = new InferRequest[batch.Count];
        var rows = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            batch[i].Running = true;
            requests[i] = batch[i].Item.Request;
            rows += batch[i].Rows;
        }

        // Checked at admission: every version of this batcher's model is a batch model.
        var model = (IBatchModel)batch[0].Lease.Model;
        var started = _time.GetTimestamp();
        IReadOnlyList<ItemOutcome>? results = null;
        InferError? failure = null;
        try
        {
            results = await context.Device.RunAsync(() => model.Run(requests));
            if (results.Count != batch.Count)
            {
                throw new InvalidOperationException($"the model returned {results.Count} outcomes for a batch of {batch.Count}.");
            }
        }
        catch (Exception ex)
        {
            LogBatchFailed(context.Logger, ex, context.Key.Model, batch.Count);
            failure = new InferError(ErrorCode.Internal, $"model '{context.Key.Model}' failed on a batch of {batch.Count}: {ex.GetType().Name}.");
        }

        var computeMs = _time.GetElapsedTime(started).TotalMilliseconds;
        _running--;
        Stats.Batch(rows);
        Stats.Items(batch.Count);
        context.Metrics.Batch(context.Key.Model, model.Version, context.Key.Device, batch.Count);
        _recentBatchMs = Stats.BatchesRun == 1 ? computeMs : (0.8 * _recentBatchMs) + (0.2 * computeMs);

        var outcomes = new List<RequestOutcome>(batch.Count);
        for (var i = 0; i < batch.Count; i++)
        {
            var q = batch[i];
            // The batch has run: its requests, cancelled ones too, let go of the version it ran on.
            q.End();
            if (q.Cancelled)
            {
                continue;
            }

            var result = failure is null ? results?[i] : null;
            var timing = new Timing(_time.GetElapsedTime(q.EnqueuedAt, started).TotalMilliseconds, computeMs, rows);
            outcomes.Add(new RequestOutcome(q, result is { Error: null, Outputs.IsDefault: false } ok
                ? new Delivery(q.Item.ClientId, q.Item.Request.RequestId, new InferResult(context.Key.Model, model.Version, ok.Outputs, timing), null)
                : new Delivery(q.Item.ClientId, q.Item.Request.RequestId, null, result?.Error ?? failure ?? new InferError(ErrorCode.Internal, "no outcome."))));
        }

        // The device is free: the next batch goes before this one's results are handed over.
        context.Host.Pump();
        return outcomes;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Model} failed on a batch of {Count}")]
    private static partial void LogBatchFailed(ILogger logger, Exception ex, string model, int count);
}
