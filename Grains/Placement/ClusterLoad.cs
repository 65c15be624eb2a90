using System.Collections.Concurrent;
using System.Collections.Immutable;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Versions;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Placement;

/// <summary>
/// This silo's view of the batchers' queue depths across the cluster, for sessions to choose a batcher: their own
/// silo's unless it is backed up, else the shortest queue elsewhere (<see cref="PlacementOptions.SpillBatches"/>).
/// Local depths are read live (each batcher writes its own cell); other silos' are polled from their
/// <see cref="IModelHostGrain"/> every <see cref="PlacementOptions.LoadRefreshInterval"/>, so a silo that joins adds its
/// batchers to the choice within one interval and one that leaves drops out of it, with no restart and no hot grain on
/// the request path.
/// </summary>
internal sealed partial class ClusterLoad(
    IGrainFactory grains,
    IClusterMembershipService membership,
    ILocalSiloDetails silo,
    ModelCatalog catalog,
    IOptions<PlacementOptions> options,
    ILogger<ClusterLoad> logger) : BackgroundService
{
    private readonly PlacementOptions _options = options.Value;

    // A silo that takes longer than this to report is left out until it next does (it may be dying, or very busy):
    // spilling to it is only worth it while it answers at once.
    private TimeSpan ReadTimeout => TimeSpan.FromTicks(Math.Clamp(_options.LoadRefreshInterval.Ticks * 2, TimeSpan.FromMilliseconds(200).Ticks, TimeSpan.FromSeconds(2).Ticks));
    private readonly ConcurrentDictionary<string, LoadCell> _local = new(StringComparer.Ordinal);
    private readonly string _silo = SiloNames.ForKey(silo.Name);
    private volatile ImmutableDictionary<string, ImmutableArray<RemoteBatcher>> _remote = ImmutableDictionary<string, ImmutableArray<RemoteBatcher>>.Empty;

    // Each other silo's last report, by silo name: _remote is rebuilt from it whenever one changes.
    private readonly ConcurrentDictionary<string, ImmutableArray<(string Model, RemoteBatcher Batcher)>> _reports = new(StringComparer.Ordinal);
    private readonly Lock _publishing = new();

    private volatile bool _draining;

    /// <summary>
    /// Set when this silo starts shutting down (<see cref="SiloDrain"/>): its sessions send to other silos' batchers, and
    /// it reports no batchers to the other silos, which stop choosing it at their next refresh.
    /// </summary>
    public bool Draining
    {
        get => _draining;
        set => _draining = value;
    }

    /// <summary>The keys of this silo's active batchers.</summary>
    public IEnumerable<string> LocalBatchers => _local.Keys;

    /// <summary>The cell a batcher of this silo writes its queue depth to while it is active.</summary>
    public LoadCell Register(string batcherKey) => _local.GetOrAdd(batcherKey, static _ => new LoadCell());

    public void Unregister(string batcherKey, LoadCell cell) => _local.TryRemove(KeyValuePair.Create(batcherKey, cell));

    /// <summary>Each ready model's batchers on this silo's devices and their queue depth (0 for one not yet active).</summary>
    public ImmutableArray<BatcherLoad> LocalLoads()
    {
        var loads = ImmutableArray.CreateBuilder<BatcherLoad>();
        if (_draining)
        {
            return [];
        }

        foreach (var name in catalog.Names)
        {
            if (catalog.TryGet(name, out var entry) && entry.State == ModelState.Ready)
            {
                foreach (var device in entry.Instances.Keys)
                {
                    loads.Add(new BatcherLoad(name, device, (int)Math.Min(int.MaxValue, LocalRows(new BatcherKey(name, _silo, device)))));
                }
            }
        }

        return loads.ToImmutable();
    }

    /// <summary>
    /// The batcher for a request of <paramref name="model"/>: this silo's on <paramref name="device"/>, unless its queue
    /// holds more than <see cref="PlacementOptions.SpillBatches"/> full batches and another silo's is a batch shorter, or
    /// this silo is <see cref="Draining"/> and another silo has the model.
    /// </summary>
    public BatcherKey Choose(string model, string device, int maxBatchSize)
    {
        var local = new BatcherKey(model, _silo, device);
        if (_options.SpillBatches == 0 && !_draining)
        {
            return local;
        }

        // Other silos first: with none (one silo, the embedded default) the local depth is not worth a key lookup.
        if (!_remote.TryGetValue(model, out var candidates))
        {
            return local;
        }

        var rows = LocalRows(local);
        if (_draining)
        {
            // This silo is leaving: any other silo's batcher, however deep its queue.
            rows = long.MaxValue - maxBatchSize;
        }
        else if (rows <= _options.SpillBatches * maxBatchSize)
        {
            return local;
        }

        RemoteBatcher? best = null;
        foreach (var candidate in candidates)
        {
            if (best is null || candidate.Rows < best.Rows)
            {
                best = candidate;
            }
        }

        if (best is null || best.Rows + maxBatchSize > rows)
        {
            return local;
        }

        // Count what is sent until the next refresh, so that a burst spreads over the other silos instead of piling
        // onto whichever looked shortest.
        Interlocked.Increment(ref best.Rows);
        return new BatcherKey(model, best.Silo, best.Device);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_options.LoadRefreshInterval);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await RefreshAsync(stoppingToken);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                LogRefreshFailed(logger, ex);
            }
        }
    }

    /// <summary>The other silos' batchers of <paramref name="model"/> known from the last refresh.</summary>
    public int KnownElsewhere(string model) => _remote.TryGetValue(model, out var batchers) ? batchers.Length : 0;

    private long LocalRows(BatcherKey key) => _local.TryGetValue(key.ToString(), out var cell) ? Volatile.Read(ref cell.Rows) : 0;

    private async Task RefreshAsync(CancellationToken cancellationToken)
    {
        var others = membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active && !m.SiloAddress.Equals(silo.SiloAddress))
            .ToList();
        var names = others.Select(m => SiloNames.ForKey(m.Name)).ToHashSet(StringComparer.Ordinal);
        var left = false;
        foreach (var gone in _reports.Keys.Where(k => !names.Contains(k)).ToList())
        {
            left |= _reports.TryRemove(gone, out _);
        }

        if (left)
        {
            Publish();
        }

        await Task.WhenAll(others.Select(m => ReadAsync(m.Name, cancellationToken)));
    }

    /// <summary>
    /// Reads one silo's loads and publishes them at once, whatever the other silos do: a silo that fails to answer
    /// (a dead one refuses the connection at once) or answers late leaves the choice at that moment, not when the
    /// slowest silo of the round has answered.
    /// </summary>
    private async Task ReadAsync(string siloName, CancellationToken cancellationToken)
    {
        var name = SiloNames.ForKey(siloName);
        try
        {
            var loads = await grains.GetGrain<IModelHostGrain>(ModelHostGrain.KeyFor(siloName)).GetLoadAsync()
                .WaitAsync(ReadTimeout, cancellationToken);
            // Built here, once per report: what Choose counts on a silo's batchers until its next report survives the
            // other silos' reports.
            _reports[name] = [.. loads.Select(l => (l.Model, new RemoteBatcher(name, l.Device) { Rows = l.QueuedRows }))];
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            // A silo that does not answer is left out until it does (it may be dying).
            LogSiloUnreadable(logger, name, ex.Message);
            if (!_reports.TryRemove(name, out _))
            {
                return;
            }
        }

        Publish();
    }

    /// <summary>
    /// A session could not reach <paramref name="siloName"/> (the connection failed): its batchers leave the choice now,
    /// until it next reports its loads, so that no other request is sent there meanwhile.
    /// </summary>
    public void Unreachable(string siloName)
    {
        if (_reports.TryRemove(siloName, out _))
        {
            Publish();
        }
    }

    private void Publish()
    {
        lock (_publishing)
        {
            _remote = _reports.Values
                .SelectMany(batchers => batchers)
                .GroupBy(x => x.Model, StringComparer.Ordinal)
                .ToImmutableDictionary(g => g.Key, g => g.Select(x => x.Batcher).ToImmutableArray(), StringComparer.Ordinal);
        }
    }

    /// <summary>One local batcher's queue depth in rows, written by the batcher only.</summary>
    internal sealed class LoadCell
    {
        public long Rows;
    }

    private sealed class RemoteBatcher(string silo, string device)
    {
        public string Silo { get; } = silo;

        public string Device { get; } = device;

        public long Rows;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Reading the other silos' batcher loads failed")]
    private static partial void LogRefreshFailed(ILogger logger, Exception ex);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Silo {Silo} did not report its batcher loads: {Reason}")]
    private static partial void LogSiloUnreadable(ILogger logger, string silo, string reason);
}
