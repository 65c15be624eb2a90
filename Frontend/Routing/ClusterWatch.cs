using System.Collections.Immutable;
using StreamInfer.Frontend.Requests;

namespace StreamInfer.Frontend.Routing;

/// <summary>
/// Follows the cluster's membership from the frontend (a co-hosted silo's or a client's view alike, through the
/// management grain, once per <see cref="PollInterval"/>). When a silo that was in the cluster is declared dead, the
/// requests its batchers held end at once with <c>model_unavailable</c> (<see cref="RequestSubmitter.FailSilo"/>) instead
/// of waiting for the watchdog: their answers cannot come.
/// </summary>
internal sealed partial class ClusterWatch(IClusterClient client, RequestSubmitter submitter, TimeProvider time, ILogger<ClusterWatch> logger) : BackgroundService
{
    /// <summary>
    /// How often membership is read: the longest a dead silo's requests wait here once the cluster has declared it
    /// (a read is one call answered from the silo's local membership view).
    /// </summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

    // The management grain may sit on the silo that just died, or the call may go through its gateway: such a read is
    // not answered for the client's whole response timeout (30 s), and a dead silo's requests would wait that long to
    // be ended. Give up on it and read again; the grain moves once the death is declared.
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(2);

    private ImmutableArray<SiloView> _silos = [];

    /// <summary>The silos as last read (every status, the dead included until Orleans forgets them).</summary>
    public ImmutableArray<SiloView> Silos => _silos;

    /// <summary>Reads membership now.</summary>
    public async Task<ImmutableArray<SiloView>> ReadAsync()
    {
        var entries = await client.GetGrain<IManagementGrain>(0).GetDetailedHosts(onlyActive: false);
        return [.. entries
            .Select(e => new SiloView(StreamInfer.Grains.Placement.SiloNames.ForKey(e.SiloName), e.SiloAddress.ToString(), e.Status.ToString(), e.StartTime))
            .OrderBy(s => s.Name, StringComparer.Ordinal)];
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Names of silos seen alive: one that is then seen dead (or gone) had requests that will not be answered.
        var alive = new HashSet<string>(StringComparer.Ordinal);
        using var timer = new PeriodicTimer(PollInterval, time);
        do
        {
            try
            {
                var silos = await ReadAsync().WaitAsync(ReadTimeout, time, stoppingToken);
                _silos = silos;
                var now = silos.Where(s => s.Status != nameof(SiloStatus.Dead)).Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
                foreach (var lost in alive.Where(name => !now.Contains(name)).ToList())
                {
                    alive.Remove(lost);
                    LogSiloLost(logger, lost, submitter.FailSilo(lost));
                }

                alive.UnionWith(now);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                // Not connected yet, or the silo that answered died: read again next time.
                LogReadFailed(logger, ex.Message);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Silo {Silo} left the cluster: its requests end with model_unavailable ({Requests} here)")]
    private static partial void LogSiloLost(ILogger logger, string silo, int requests);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Reading cluster membership failed: {Reason}")]
    private static partial void LogReadFailed(ILogger logger, string reason);
}

/// <summary>One silo as the frontend sees it.</summary>
internal sealed record SiloView(string Name, string Address, string Status, DateTime StartTime);
