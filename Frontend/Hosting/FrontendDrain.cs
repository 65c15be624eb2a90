using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Requests;
using StreamInfer.Frontend.WebSockets;
using StreamInfer.Grains.Metrics;

namespace StreamInfer.Frontend.Hosting;

/// <summary>
/// The frontend's connections and its graceful shutdown. Counts WebSocket connections against
/// <see cref="FrontendOptions.MaxConnections"/>. On SIGTERM (the host's stopping phase, before any service stops, so
/// the co-hosted silo still serves) it stops accepting (upgrades and new inference over HTTP get 503, readiness turns
/// false), warns every client (<c>warning</c> <c>draining</c>), lets requests in flight finish for up to
/// <see cref="FrontendOptions.DrainTimeout"/>, then closes each socket with 1001 (going away).
/// </summary>
internal sealed partial class FrontendDrain(
    IOptions<FrontendOptions> options,
    RequestTable requests,
    GridMetrics metrics,
    TimeProvider time,
    ILogger<FrontendDrain> logger) : IHostedLifecycleService
{
    // A client that does not answer our close frame within this is dropped.
    private static readonly TimeSpan CloseHandshake = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan DrainPoll = TimeSpan.FromMilliseconds(20);

    private readonly ConcurrentDictionary<ClientConnection, byte> _open = new();
    private int _slots;
    private volatile bool _draining;

    /// <summary>Whether the frontend is shutting down (refusing new work).</summary>
    public bool IsDraining => _draining;

    /// <summary>WebSocket connections (held, or being upgraded) and gRPC streams held now.</summary>
    public int Connections => Volatile.Read(ref _slots);

    /// <summary>Requests not yet ended, of every WebSocket connection and over HTTP.</summary>
    public int InFlight => requests.Count;

    /// <summary>Bytes the open connections' receive buffers hold now.</summary>
    public long ReceiveBufferBytes => _open.Keys.Sum(static c => (long)c.ReceiveBufferHeld);

    /// <summary>The session ids of the connections that still serve.</summary>
    public IReadOnlyCollection<string> ClientIds => [.. _open.Keys.Where(static c => c.IsOpen).Select(static c => c.ClientId)];

    /// <summary>Takes a connection slot for an upgrade; false when draining or at <see cref="FrontendOptions.MaxConnections"/>.</summary>
    public bool TryReserve()
    {
        if (_draining)
        {
            return false;
        }

        if (Interlocked.Increment(ref _slots) > options.Value.MaxConnections)
        {
            Interlocked.Decrement(ref _slots);
            return false;
        }

        metrics.Connection(1);
        return true;
    }

    /// <summary>Gives back a slot from <see cref="TryReserve"/> (the upgrade failed, or the connection ended).</summary>
    public void Release()
    {
        Interlocked.Decrement(ref _slots);
        metrics.Connection(-1);
    }

    public void Opened(ClientConnection connection)
    {
        _open[connection] = 0;
        if (_draining)
        {
            // Upgraded just as the drain began: it gets the warning like the rest.
            connection.BeginDrain((long)options.Value.DrainTimeout.TotalMilliseconds);
        }
    }

    public void Closed(ClientConnection connection) => _open.TryRemove(connection, out _);

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        _draining = true;
        var drain = options.Value.DrainTimeout;
        var started = time.GetTimestamp();
        var connections = _open.Keys.ToList();
        LogDraining(logger, connections.Count, InFlight, drain);
        foreach (var connection in _open.Keys)
        {
            connection.BeginDrain((long)drain.TotalMilliseconds);
        }

        try
        {
            // A short poll, not a signal: this runs once, at shutdown.
            while (InFlight > 0 && time.GetElapsedTime(started) < drain)
            {
                await Task.Delay(DrainPoll, time, cancellationToken);
            }

            var unfinished = InFlight;
            foreach (var connection in _open.Keys)
            {
                connection.CloseGoingAway();
            }

            var closing = time.GetTimestamp();
            while (!_open.IsEmpty && time.GetElapsedTime(closing) < CloseHandshake)
            {
                await Task.Delay(DrainPoll, time, cancellationToken);
            }

            foreach (var connection in _open.Keys)
            {
                connection.Abort();
            }

            LogDrained(logger, connections.Count, time.GetElapsedTime(started).TotalMilliseconds, unfinished);
        }
        catch (OperationCanceledException)
        {
            // The host's own shutdown timeout passed first: what is left is cut when the server stops.
        }
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "Draining: {Connections} connections and {Requests} requests in flight get up to {Timeout} to finish")]
    private static partial void LogDraining(ILogger logger, int connections, int requests, TimeSpan timeout);

    [LoggerMessage(Level = LogLevel.Information, Message = "Drained {Connections} connections in {Ms:F0} ms; {Unfinished} requests were still in flight when the sockets closed")]
    private static partial void LogDrained(ILogger logger, int connections, double ms, int unfinished);
}
