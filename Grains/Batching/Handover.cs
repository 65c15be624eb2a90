using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using StreamInfer.Grains.Clocks;
using StreamInfer.Grains.Deliveries;
using StreamInfer.Grains.Metrics;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// Where everything a batcher produced leaves it, whichever scheduler produced it and whether it is a result, a token,
/// an expiry or a shutdown: the ends are counted and forgotten, the deliveries go to the outbox, and each session hears
/// which of its requests ended.
/// </summary>
internal sealed partial class Handover(
    BatcherKey key,
    RequestQueue queue,
    DeliveryOutbox outbox,
    IActivitySignal activity,
    IGrainFactory grains,
    GridMetrics metrics,
    TimeProvider time,
    ILogger logger)
{
    /// <summary>Counts the requests that end, forgets them, sends every delivery through the outbox and tells each
    /// session which of its requests ended.</summary>
    public Task Finish(IReadOnlyList<RequestOutcome> outcomes, DateTimeOffset producedAt, bool ordered)
    {
        if (outcomes.Count == 0)
        {
            return Task.CompletedTask;
        }

        // Results are about to leave: a precise clock idling since the last admission fires on time again.
        activity.NotifyActivity();
        var sends = new List<(DeliveryTarget, Delivery)>(outcomes.Count);
        List<(DeliveryTarget, Delivery)>? sequenceSends = null;
        Dictionary<string, List<string>>? endedBySession = null;
        foreach (var (q, delivery) in outcomes)
        {
            if (delivery.IsEnd && q.Item.Request.Sequence is { Ordered: false })
            {
                (sequenceSends ??= []).Add((q.Target, delivery));
            }
            else
            {
                sends.Add((q.Target, delivery));
            }

            if (delivery.IsEnd)
            {
                queue.Forget(q);
                RecordEnd(q, delivery);
                endedBySession ??= new(StringComparer.Ordinal);
                if (!endedBySession.TryGetValue(q.Item.ClientId, out var ids))
                {
                    endedBySession[q.Item.ClientId] = ids = [];
                }

                ids.Add(q.Item.Request.RequestId);
            }
        }

        var delivered = outbox.SendAsync(sends, producedAt, ordered);
        if (endedBySession is null)
        {
            return delivered;
        }

        var notified = Task.WhenAll(endedBySession.Select(s => NotifySessionAsync(s.Key, [.. s.Value])));
        return sequenceSends is null
            ? Task.WhenAll(notified, delivered)
            : Task.WhenAll(DeliverAfterAsync(notified, sequenceSends, producedAt, ordered), delivered);
    }

    /// <summary>
    /// Sends the results of unordered sequence requests once their session heard they ended: a unary client sends its
    /// next request of the sequence on the answer, and would otherwise find the session still counting the previous one
    /// as running. An ordered transport's next request waits in the session instead, and its answer must not overtake
    /// this one, so those go at once.
    /// </summary>
    private async Task DeliverAfterAsync(Task notified, List<(DeliveryTarget, Delivery)> sends, DateTimeOffset producedAt, bool ordered)
    {
        await notified;
        await outbox.SendAsync(sends, producedAt, ordered);
    }

    private void RecordEnd(QueuedRequest q, Delivery delivery)
    {
        var version = q.Lease.Model.Version;
        var code = delivery.Error is { } error ? error.Code.ToWire() : delivery.Done?.FinishReason switch
        {
            FinishReasons.Cancelled => ErrorCode.Cancelled.ToWire(),
            FinishReasons.Deadline => ErrorCode.DeadlineExceeded.ToWire(),
            _ => GridMetrics.Ok,
        };
        metrics.Ended(key.Model, version, key.Device, code, time.GetElapsedTime(q.EnqueuedAt).TotalSeconds);
        if (delivery.Result is { } result)
        {
            metrics.Queued(key.Model, version, key.Device, result.Timing.QueueMs / 1000, result.Timing.ComputeMs / 1000);
        }
    }

    private async Task NotifySessionAsync(string clientId, ImmutableArray<string> ids)
    {
        try
        {
            await grains.GetGrain<IClientSessionGrain>(clientId).CompletedAsync(ids);
        }
        catch (Exception ex)
        {
            LogNotifyFailed(logger, ex, clientId);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Telling session {ClientId} of completions failed")]
    private static partial void LogNotifyFailed(ILogger logger, Exception ex, string clientId);
}
