using Microsoft.Extensions.Logging;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// The batches a batch model's scheduler has put on the device: each runs there as one call, its requests end with
/// their results (or the batch's failure), and the next batch is let go before the results are handed over. Counts
/// what ran and keeps the recent time per batch for admission's estimate.
/// </summary>
internal sealed partial class DeviceBatches(BatcherContext context)
{
    private readonly TimeProvider _time = context.Time;

    // Batches dispatched whose results are not yet handed over.
    private int _unfinished;
    private TaskCompletionSource? _idle;

    // Admission's estimate of a batch's compute time: recent batches', the warm-up's until one has run.
    private double _recentBatchMs;

    /// <summary>Batches on the device now.</summary>
    public int Running { get; private set; }

    /// <summary>Nothing dispatched is still on the device or being handed over.</summary>
    public bool Idle => _unfinished == 0;

    public BatchStats Stats { get; } = new();

    /// <summary>The batches the queued rows fill, plus those on the device, at the recent time per batch, spread over the
    /// batches that may run at once. It assumes full batches, so it errs towards admitting.</summary>
    public double ExpectedWaitMs(long rowsAhead, int rows, ModelOptions options, IInferenceModel serving)
    {
        var perBatch = Stats.BatchesRun > 0 ? _recentBatchMs : serving.WarmBatchMs;
        var batches = Math.Ceiling((double)(rowsAhead + rows) / options.MaxBatchSize) + Running;
        return batches * perBatch / options.MaxConcurrentBatches;
    }

    public Task WhenIdleAsync()
    {
        if (_unfinished == 0)
        {
            return Task.CompletedTask;
        }

        _idle ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return _idle.Task;
    }

    /// <summary>
    /// Puts <paramref name="batch"/> on the device as one run per model version it holds (during a rollout a batch may
    /// hold requests leased to the old version and to the new one), each as <see cref="Start"/> does.
    /// </summary>
    public void StartByVersion(List<QueuedRequest> batch, Func<List<QueuedRequest>, IReadOnlyList<InferRequest>, IReadOnlyList<ItemOutcome>>? run = null, Action<QueuedRequest, ItemOutcome?>? ran = null)
    {
        var lease = batch[0].Lease;
        if (batch.TrueForAll(q => q.Lease == lease))
        {
            Start(batch, run, ran);
            return;
        }

        foreach (var group in batch.GroupBy(q => q.Lease))
        {
            Start(group.ToList(), run, ran);
        }
    }

    /// <summary>
    /// Puts <paramref name="batch"/> on the device: <paramref name="run"/> runs it there, given the batch and its
    /// requests (by default the batch model's own run). <paramref name="ran"/>, if given, sees each request and its
    /// outcome (null when the whole batch failed) on the grain's thread before the request ends.
    /// </summary>
    public void Start(List<QueuedRequest> batch, Func<List<QueuedRequest>, IReadOnlyList<InferRequest>, IReadOnlyList<ItemOutcome>>? run = null, Action<QueuedRequest, ItemOutcome?>? ran = null)
    {
        Running++;
        _unfinished++;
        _ = RunAsync(batch, run, ran);
    }

    private async Task RunAsync(List<QueuedRequest> batch, Func<List<QueuedRequest>, IReadOnlyList<InferRequest>, IReadOnlyList<ItemOutcome>>? run, Action<QueuedRequest, ItemOutcome?>? ran)
    {
        try
        {
            await context.Host.Finish(await RunOnDeviceAsync(batch, run, ran), _time.GetUtcNow(), ordered: false);
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
    private async Task<List<RequestOutcome>> RunOnDeviceAsync(List<QueuedRequest> batch, Func<List<QueuedRequest>, IReadOnlyList<InferRequest>, IReadOnlyList<ItemOutcome>>? run, Action<QueuedRequest, ItemOutcome?>? ran)
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
            results = await context.Device.RunAsync(() => run is null ? model.Run(requests) : run(batch, requests));
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
        Running--;
        Stats.Batch(rows);
        Stats.Items(batch.Count);
        context.Metrics.Batch(context.Key.Model, model.Version, context.Key.Device, batch.Count);
        _recentBatchMs = Stats.BatchesRun == 1 ? computeMs : (0.8 * _recentBatchMs) + (0.2 * computeMs);

        var outcomes = new List<RequestOutcome>(batch.Count);
        for (var i = 0; i < batch.Count; i++)
        {
            var q = batch[i];
            var result = failure is null ? results?[i] : null;
            ran?.Invoke(q, result);
            // The batch has run: its requests, cancelled ones too, let go of the version it ran on.
            q.End();
            if (q.Cancelled)
            {
                continue;
            }

            var timing = new Timing(_time.GetElapsedTime(q.EnqueuedAt, started).TotalMilliseconds, computeMs, rows);
            outcomes.Add(new RequestOutcome(q, result is { Error: null, Outputs.IsDefault: false } ok
                ? new Delivery(q.Item.ClientId, q.Item.Request.RequestId, new InferResult(context.Key.Model, model.Version, ok.Outputs, timing, q.Window), null)
                : new Delivery(q.Item.ClientId, q.Item.Request.RequestId, null, result?.Error ?? failure ?? new InferError(ErrorCode.Internal, "no outcome."))));
        }

        // The device is free: the next batch goes before this one's results are handed over.
        context.Host.Pump();
        return outcomes;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Model} failed on a batch of {Count}")]
    private static partial void LogBatchFailed(ILogger logger, Exception ex, string model, int count);
}
