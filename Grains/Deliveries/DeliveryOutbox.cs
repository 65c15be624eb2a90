using Microsoft.Extensions.Logging;

namespace StreamInfer.Grains.Deliveries;

/// <summary>
/// A batcher's way out to the frontends: groups what it produced into one <see cref="DeliveryBatch"/> per destination
/// frontend, keeps a destination's ordered batches one at a time in the order they were sent (a generation's tokens
/// before its end), retries a refused batch with backoff (<see cref="DeliveryRetry"/>), and remembers a frontend that
/// failed every retry so that later batches to it are dropped at once instead of each waiting out the retries. The
/// frontend drops what it already has, so a retried batch that did arrive the first time does no harm.
/// </summary>
internal sealed partial class DeliveryOutbox(IDeliveryPublisher publisher, DeliveryRetry retry, TimeProvider time, ILogger logger)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, Task> _ordered = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _unreachableUntil = new(StringComparer.Ordinal);
    private int _inFlight;

    /// <summary>Nothing is being delivered or waiting to be.</summary>
    public bool Idle
    {
        get
        {
            lock (_gate)
            {
                return _inFlight == 0;
            }
        }
    }

    /// <summary>
    /// Sends <paramref name="deliveries"/>, one batch per destination, each stamped <paramref name="producedAt"/>. With
    /// <paramref name="ordered"/>, each destination's batch goes only after the ordered batches sent to it before;
    /// otherwise at once. Completes when every batch has been delivered, or dropped after its retries.
    /// </summary>
    public Task SendAsync(IReadOnlyList<(DeliveryTarget To, Delivery Delivery)> deliveries, DateTimeOffset producedAt, bool ordered)
    {
        if (deliveries.Count == 0)
        {
            return Task.CompletedTask;
        }

        var sends = new List<Task>(1);
        foreach (var group in deliveries.GroupBy(static d => d.To.Frontend, StringComparer.Ordinal))
        {
            var batch = new DeliveryBatch([.. group.Select(static d => d.Delivery)], producedAt);
            var to = group.First().To;
            sends.Add(ordered ? SendOrderedAsync(to, batch) : SendNowAsync(to, batch));
        }

        return sends.Count == 1 ? sends[0] : Task.WhenAll(sends);
    }

    private async Task SendNowAsync(DeliveryTarget to, DeliveryBatch batch)
    {
        lock (_gate)
        {
            _inFlight++;
        }

        try
        {
            await PublishAsync(to, batch);
        }
        finally
        {
            lock (_gate)
            {
                _inFlight--;
            }
        }
    }

    private async Task SendOrderedAsync(DeliveryTarget to, DeliveryBatch batch)
    {
        var mine = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task previous;
        lock (_gate)
        {
            _inFlight++;
            previous = _ordered.GetValueOrDefault(to.Frontend) ?? Task.CompletedTask;
            _ordered[to.Frontend] = mine.Task;
        }

        try
        {
            await previous;
            await PublishAsync(to, batch);
        }
        finally
        {
            mine.SetResult();
            lock (_gate)
            {
                _inFlight--;
                if (_ordered.GetValueOrDefault(to.Frontend) == mine.Task)
                {
                    _ordered.Remove(to.Frontend);
                }
            }
        }
    }

    /// <summary>Publishes one batch, retrying on failure; never throws.</summary>
    private async Task PublishAsync(DeliveryTarget to, DeliveryBatch batch)
    {
        if (Unreachable(to.Frontend))
        {
            // Failing at once keeps a generation's chain of steps to a gone frontend from growing by a retry budget each.
            return;
        }

        var started = time.GetTimestamp();
        var delay = retry.First;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await publisher.PublishAsync(to, batch);
                return;
            }
            catch (Exception ex) when (attempt < retry.MinAttempts || time.GetElapsedTime(started) < retry.Budget)
            {
                LogPublishRetry(logger, to.Frontend, attempt, ex.Message);
            }
            catch (Exception ex)
            {
                // The frontend's own watchdog ends these requests for its clients.
                LogPublishFailed(logger, ex, to.Frontend, batch.Items.Length, attempt);
                lock (_gate)
                {
                    _unreachableUntil[to.Frontend] = time.GetTimestamp() + (long)(retry.UnreachableFor.TotalSeconds * time.TimestampFrequency);
                }

                return;
            }

            await Task.Delay(delay, time);
            delay = delay * 2 < retry.Max ? delay * 2 : retry.Max;
        }
    }

    private bool Unreachable(string frontend)
    {
        lock (_gate)
        {
            if (!_unreachableUntil.TryGetValue(frontend, out var until))
            {
                return false;
            }

            if (time.GetTimestamp() < until)
            {
                return true;
            }

            _unreachableUntil.Remove(frontend);
            return false;
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Publishing to frontend {Frontend} failed (attempt {Attempt}): {Reason}; retrying")]
    private static partial void LogPublishRetry(ILogger logger, string frontend, int attempt, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Publishing {Count} deliveries to frontend {Frontend} failed after {Attempt} attempts")]
    private static partial void LogPublishFailed(ILogger logger, Exception ex, string frontend, int count, int attempt);
}
