using System.Collections.Concurrent;
using StreamInfer.Grains.Metrics;

namespace StreamInfer.Frontend.Routing;

/// <summary>Something that holds a client's socket and writes what the grid delivers to it.</summary>
internal interface IDeliverySink
{
    /// <summary>Writes one request's token or end (if the sink still waits for it). Must not block.
    /// <paramref name="producedAt"/>: when the grid produced it (<see cref="DeliveryBatch.ProducedAt"/>).</summary>
    void Deliver(Delivery delivery, DateTimeOffset producedAt);

    /// <summary>Ends, with <c>deadline_exceeded</c>, requests whose answer is overdue past the watchdog grace.</summary>
    void ExpireOverdue(long nowTimestamp);

    /// <summary>
    /// Ends, with <paramref name="error"/>, requests held by a batcher on <paramref name="silo"/> (declared dead), and
    /// those whose admission has not answered yet: a call in flight through the dead silo's gateway is never answered
    /// (the client would wait out its response timeout), and which gateway a call took is not known here.
    /// </summary>
    void FailSilo(string silo, InferError error);
}

/// <summary>
/// This frontend's delivery endpoint: batchers call it as a grain observer (<see cref="IDeliveryObserver"/>, named in
/// every request through <see cref="FrontendIdentity.Observer"/>). It hands each <see cref="DeliveryBatch"/>'s items to the connection (or HTTP request) they belong to. Also runs the watchdog that
/// ends requests whose answer never came (a silo lost with them), so no client waits forever.
/// </summary>
internal sealed partial class DeliveryRouter(
    IClusterClient client,
    FrontendIdentity identity,
    TimeProvider time,
    ILogger<DeliveryRouter> logger) : IHostedService, IDeliveryObserver, IDisposable
{
    private static readonly TimeSpan WatchdogPeriod = TimeSpan.FromSeconds(1);

    private readonly ConcurrentDictionary<string, IDeliverySink> _sinks = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Client, string Request), HttpWaiter> _waiters = new();
    private ITimer? _watchdog;

    /// <summary>The session ids of the connections registered now.</summary>
    public IReadOnlyCollection<string> ClientIds => [.. _sinks.Keys];

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // This singleton holds the object strongly; Orleans keeps only a weak reference to it.
        identity.Observer = client.CreateObjectReference<IDeliveryObserver>(this);
        _watchdog = time.CreateTimer(_ => Sweep(), null, WatchdogPeriod, WatchdogPeriod);
        LogReady(logger, identity.Id);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _watchdog?.Dispose();
        if (identity.Observer is { } observer)
        {
            identity.Observer = null;
            client.DeleteObjectReference<IDeliveryObserver>(observer);
        }

        return Task.CompletedTask;
    }

    public void Register(string clientId, IDeliverySink sink) => _sinks[clientId] = sink;

    public void Unregister(string clientId) => _sinks.TryRemove(clientId, out _);

    /// <summary>
    /// Registers a waiter for an HTTP request; <paramref name="requestId"/> must be unique. The task completes with the
    /// request's end; a text request's tokens before it go to <paramref name="tokens"/> when one is given.
    /// </summary>
    public Task<Delivery> AddWaiter(string clientId, string requestId, Action<GeneratedToken, DateTimeOffset>? tokens = null)
    {
        var waiter = new HttpWaiter(tokens);
        _waiters[(clientId, requestId)] = waiter;
        return waiter.End.Task;
    }

    public void RemoveWaiter(string clientId, string requestId) => _waiters.TryRemove((clientId, requestId), out _);

    /// <summary>HTTP requests waiting for their end now.</summary>
    public int HttpInFlight => _waiters.Count;

    /// <summary>Records which silo's batcher holds an HTTP request (its admission said so).</summary>
    public void Placed(string clientId, string requestId, string? silo)
    {
        if (silo is not null && _waiters.TryGetValue((clientId, requestId), out var waiter))
        {
            waiter.Silo = silo;
        }
    }

    /// <summary>
    /// A silo was declared dead: every request its batchers held, and every one still being admitted, ends now with
    /// <c>model_unavailable</c> (the client may retry at once: new requests go to the silos left), and its session slot
    /// is released.
    /// </summary>
    public void FailSilo(string silo)
    {
        var error = new InferError(ErrorCode.ModelUnavailable, $"silo '{silo}', which was running this request, left the cluster; retry.");
        var failed = 0;
        foreach (var sink in _sinks.Values)
        {
            sink.FailSilo(silo, error);
        }

        foreach (var ((clientId, requestId), waiter) in _waiters)
        {
            if ((waiter.Silo is null || waiter.Silo == silo) && _waiters.TryRemove((clientId, requestId), out _))
            {
                waiter.End.TrySetResult(new Delivery(clientId, requestId, null, error));
                _ = ReleaseQuietlyAsync(clientId, requestId);
                failed++;
            }
        }

        LogSiloLost(logger, silo, failed);
    }

    private async Task ReleaseQuietlyAsync(string clientId, string requestId)
    {
        try
        {
            await client.GetGrain<IClientSessionGrain>(clientId).CancelAsync(requestId);
        }
        catch (Exception ex)
        {
            LogReleaseFailed(logger, ex, clientId, requestId);
        }
    }

    /// <summary>A batcher's call: hands the batch's items to the connections (or HTTP requests) they belong to.</summary>
    public Task DeliverAsync(DeliveryBatch batch)
    {
        if (batch.ProducedAt != default)
        {
            GridMetrics.Arrived((time.GetUtcNow() - batch.ProducedAt).TotalSeconds);
        }

        foreach (var delivery in batch.Items)
        {
            try
            {
                if (_sinks.TryGetValue(delivery.ClientId, out var sink))
                {
                    sink.Deliver(delivery, batch.ProducedAt);
                }
                else if (delivery.Token is { } generated && _waiters.TryGetValue((delivery.ClientId, delivery.RequestId), out var streaming))
                {
                    // A token at an index already handed on is a retried delivery's duplicate (D9).
                    if (generated.Index >= streaming.NextIndex)
                    {
                        streaming.NextIndex = generated.Index + 1;
                        streaming.Tokens?.Invoke(generated, batch.ProducedAt);
                    }

                    if (delivery.IsEnd && _waiters.TryRemove((delivery.ClientId, delivery.RequestId), out var waiter))
                    {
                        waiter.End.TrySetResult(delivery);
                    }
                }
                else if (delivery.IsEnd && _waiters.TryRemove((delivery.ClientId, delivery.RequestId), out var waiter))
                {
                    waiter.End.TrySetResult(delivery);
                }
            }
            catch (Exception ex)
            {
                // One item that cannot be handed over must not hold back its batch-mates (the batcher would retry the
                // whole batch).
                LogDeliverFailed(logger, ex, delivery.ClientId, delivery.RequestId);
            }
        }

        return Task.CompletedTask;
    }

    public void Dispose() => _watchdog?.Dispose();

    private void Sweep()
    {
        var now = time.GetTimestamp();
        foreach (var sink in _sinks.Values)
        {
            sink.ExpireOverdue(now);
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Handing the answer to {RequestId} to client {ClientId} failed")]
    private static partial void LogDeliverFailed(ILogger logger, Exception ex, string clientId, string requestId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Silo {Silo} left the cluster: its requests end with model_unavailable ({Http} HTTP requests here)")]
    private static partial void LogSiloLost(ILogger logger, string silo, int http);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Releasing request {RequestId} of client {ClientId} at its session failed")]
    private static partial void LogReleaseFailed(ILogger logger, Exception ex, string clientId, string requestId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Frontend {FrontendId} receives deliveries through its grain observer")]
    private static partial void LogReady(ILogger logger, string frontendId);
}

/// <summary>An HTTP request waiting for its end, and for the tokens before it.</summary>
internal sealed class HttpWaiter(Action<GeneratedToken, DateTimeOffset>? tokens)
{
    public TaskCompletionSource<Delivery> End { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Takes each token with when the grid produced it.</summary>
    public Action<GeneratedToken, DateTimeOffset>? Tokens { get; } = tokens;

    /// <summary>The index of the next token to hand on; one request's deliveries come from one batcher, in order.</summary>
    public int NextIndex { get; set; }

    /// <summary>The silo whose batcher holds the request, once admitted (null while its admission is in flight).</summary>
    public volatile string? Silo;
}

/// <summary>This frontend's identity: named in every request's ReplyTo (and ReplyObserver).</summary>
internal sealed class FrontendIdentity
{
    /// <summary>The frontend's id: batchers group and order deliveries by it.</summary>
    public string Id { get; } = $"fe-{Guid.NewGuid():N}";

    /// <summary>The frontend's delivery observer, set at start.</summary>
    public IDeliveryObserver? Observer { get; set; }
}
