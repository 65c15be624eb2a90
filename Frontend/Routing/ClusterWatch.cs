using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using StreamInfer.Frontend.Requests;

namespace StreamInfer.Frontend.Routing;

/// <summary>
/// Follows the cluster's membership from the frontend (a co-hosted silo's or a client's view alike, through the
/// management grain, once per <see cref="PollInterval"/>). When a silo that was in the cluster is declared dead, the
/// requests its batchers held end at once with <c>model_unavailable</c> (<see cref="RequestSubmitter.FailSilo"/>) instead
/// of waiting for the watchdog: their answers cannot come. Sooner still when this frontend's connection to a silo's
/// gateway closes and the gateway then refuses a connection: that silo's process is gone, and what its batchers held
/// ends then (<see cref="RequestSubmitter.FailHeldBy"/>), seconds before membership declares it (docs/decisions.md D22).
/// </summary>
internal sealed partial class ClusterWatch(IClusterClient client, RequestSubmitter submitter, GatewayLoss gatewayLoss, TimeProvider time, ILogger<ClusterWatch> logger) : BackgroundService
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

    // How long a connection to a gateway may take before the probe gives up on it: a refusal on a live host is
    // immediate, and a host that does not answer at all is left to membership.
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromMilliseconds(500);

    private ImmutableArray<SiloView> _silos = [];

    // The gateways of the silos last read as active, by silo name.
    private ImmutableDictionary<string, IPEndPoint> _gateways = ImmutableDictionary<string, IPEndPoint>.Empty;

    /// <summary>The silos as last read (every status, the dead included until Orleans forgets them).</summary>
    public ImmutableArray<SiloView> Silos => _silos;

    /// <summary>Reads membership now.</summary>
    public async Task<ImmutableArray<SiloView>> ReadAsync() => View(await ReadEntriesAsync());

    private Task<MembershipEntry[]> ReadEntriesAsync() => client.GetGrain<IManagementGrain>(0).GetDetailedHosts(onlyActive: false);

    private static ImmutableArray<SiloView> View(MembershipEntry[] entries)
        => [.. entries
            .Select(e => new SiloView(Name(e), e.SiloAddress.ToString(), e.Status.ToString(), e.StartTime))
            .OrderBy(s => s.Name, StringComparer.Ordinal)];

    private static string Name(MembershipEntry entry) => StreamInfer.Grains.Placement.SiloNames.ForKey(entry.SiloName);

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
        => Task.WhenAll(FollowMembershipAsync(stoppingToken), ProbeGatewaysAsync(stoppingToken));

    private async Task FollowMembershipAsync(CancellationToken stoppingToken)
    {
        // Names of silos seen alive: one that is then seen dead (or gone) had requests that will not be answered.
        var alive = new HashSet<string>(StringComparer.Ordinal);
        using var timer = new PeriodicTimer(PollInterval, time);
        do
        {
            try
            {
                var entries = await ReadEntriesAsync().WaitAsync(ReadTimeout, time, stoppingToken);
                var silos = View(entries);
                _silos = silos;
                // A silo restarted under its name may be listed twice until its old self is declared dead: the newest counts.
                _gateways = entries
                    .Where(e => e.Status == SiloStatus.Active && e.ProxyPort > 0)
                    .GroupBy(Name, StringComparer.Ordinal)
                    .ToImmutableDictionary(g => g.Key, g => g.MaxBy(e => e.SiloAddress.Generation)!, StringComparer.Ordinal)
                    .ToImmutableDictionary(e => e.Key, e => new IPEndPoint(e.Value.SiloAddress.Endpoint.Address, e.Value.ProxyPort), StringComparer.Ordinal);
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

    /// <summary>
    /// Each time a gateway connection closes, tries a connection to every active silo's gateway; a refused one means
    /// nothing listens there (a stopping silo's gateway listens until after its drain), so the requests held by that
    /// silo's batchers end now.
    /// </summary>
    private async Task ProbeGatewaysAsync(CancellationToken stoppingToken)
    {
        var loss = gatewayLoss.Next;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await loss.WaitAsync(stoppingToken);

                // Read before probing: a gateway lost while this round runs gets a round of its own.
                loss = gatewayLoss.Next;
                var gateways = _gateways;
                var refused = await Task.WhenAll(gateways.Select(async g => (Silo: g.Key, Gone: await RefusedAsync(g.Value, stoppingToken))));
                foreach (var (silo, _) in refused.Where(r => r.Gone))
                {
                    LogGatewayGone(logger, silo, gateways[silo].ToString(), submitter.FailHeldBy(silo));
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private async Task<bool> RefusedAsync(IPEndPoint gateway, CancellationToken stoppingToken)
    {
        using var socket = new Socket(gateway.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        timeout.CancelAfter(ProbeTimeout);
        try
        {
            await socket.ConnectAsync(gateway, timeout.Token);
            return false;
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused)
        {
            return true;
        }
        catch (Exception) when (!stoppingToken.IsCancellationRequested)
        {
            // Timed out or unreachable: not proof of anything; membership decides.
            return false;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Silo {Silo}'s gateway {Gateway} refuses connections: the requests its batchers held end with model_unavailable ({Requests} here)")]
    private static partial void LogGatewayGone(ILogger logger, string silo, string gateway, int requests);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Silo {Silo} left the cluster: its requests end with model_unavailable ({Requests} here)")]
    private static partial void LogSiloLost(ILogger logger, string silo, int requests);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Reading cluster membership failed: {Reason}")]
    private static partial void LogReadFailed(ILogger logger, string reason);
}

/// <summary>One silo as the frontend sees it.</summary>
internal sealed record SiloView(string Name, string Address, string Status, DateTime StartTime);
