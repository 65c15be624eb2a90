using System.Collections.Immutable;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.Placement;
using StreamInfer.Grains.Clocks;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Metrics;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;
using StreamInfer.Grains.Placement;

namespace StreamInfer.Grains.Sessions;

/// <summary>
/// One connected client. Reentrant so that a client's concurrent requests are admitted while earlier ones wait on
/// their batcher; every check-and-update of the bucket, backlog and sequences happens before the first await, so
/// interleaving never sees a half-made decision. The bucket is the first check: a refusal for the client's own doing
/// (bad input, an unknown model, a full backlog) costs a token as a request does.
/// </summary>
/// <remarks>
/// Placed at random over the silos: Orleans' default placement put a frontend's sessions on the silo whose gateway it
/// used, so one silo's batcher did most of the work (docs/decisions.md D8). Sessions use their own silo's batcher first.
/// A stateful sequence's requests all go to the batcher its start went to, one at a time (see the sequences part).
/// </remarks>
[Reentrant]
[RandomPlacement]
internal sealed partial class ClientSessionGrain(
    IOptions<ClientSessionOptions> options,
    ModelCatalog catalog,
    ClusterLoad load,
    IClusterMembershipService membership,
    IActivitySignal activity,
    GridMetrics metrics,
    [FromKeyedServices(StreamInferClock.Key)] TimeProvider time,
    ILogger<ClientSessionGrain> logger) : Grain, IClientSessionGrain
{
    /// <summary>Retry hint while a dead silo is being declared so (ProbeTimeout x MissedProbesLimit is about 2-3 s).</summary>
    private const int SiloLostRetryMs = 1000;

    /// <summary>Retry hint when the batcher could not be reached for another reason (a call that timed out).</summary>
    private const int UnreachableRetryMs = 1000;

    private static readonly InferError SessionClosed = new(ErrorCode.BadRequest, "the session is closed.");

    private readonly ClientSessionOptions _options = options.Value;
    private TokenBucket _bucket = new(options.Value.RatePerSecond, options.Value.Burst, time);
    private Backlog<Pending> _backlog = new(options.Value.BacklogCapacity);
    private ClientLimits? _limits;
    private bool _closed;

    private string ClientId => this.GetPrimaryKeyString();

    public async Task<Admission> SubmitAsync(InferRequest request)
    {
        activity.NotifyActivity();
        if (_closed)
        {
            return Admission.Refused(SessionClosed);
        }

        if (Again(request.RequestId) is { } again)
        {
            return await again;
        }

        return await Answer(request.RequestId, AdmitAsync(request));
    }

    /// <summary>Admits a request seen for the first time (see <see cref="SubmitAsync"/>).</summary>
    private async Task<Admission> AdmitAsync(InferRequest request)
    {
        // The first check: every submission costs a token, bad input included; a refusal that is the grid's gives it back.
        // The client's key's limits (if any) come first: they size the bucket.
        Apply(request.Limits);
        var model = catalog.TryGet(request.Model, out var entry) ? entry : null;
        if (!_bucket.TryTake(out var retryAfter))
        {
            var ms = (int)retryAfter.TotalMilliseconds;
            metrics.Refused(model is null ? GridMetrics.UnknownModel : request.Model, ErrorCode.RateLimited);
            return Admission.Refused(new InferError(ErrorCode.RateLimited, $"rate limit of {_bucket.RatePerSecond}/s (burst {_bucket.Burst}) exceeded; retry in {ms} ms.", ms));
        }

        if (model is null)
        {
            // A fixed label: the names clients make up must not become series.
            metrics.Refused(GridMetrics.UnknownModel, ErrorCode.UnknownModel);
            return Admission.Refused(new InferError(ErrorCode.UnknownModel, $"no model named '{request.Model}' is served (served: {string.Join(", ", catalog.Names.Order(StringComparer.Ordinal))})."));
        }

        if (Unavailable(model) is { } unavailable)
        {
            _bucket.Refund();
            metrics.Refused(request.Model, ErrorCode.ModelUnavailable);
            return Admission.Refused(unavailable);
        }

        var route = request.Sequence is null ? default : RouteSequence(request, model);
        if (route.Refusal is { } misuse)
        {
            metrics.Refused(request.Model, misuse.Code);
            return Admission.Refused(misuse);
        }

        var now = time.GetUtcNow();
        if (_backlog.IsFull)
        {
            ReclaimOrphans(now);
        }

        if (_backlog.IsFull)
        {
            metrics.Refused(request.Model, ErrorCode.BacklogFull);
            return Admission.Refused(new InferError(ErrorCode.BacklogFull, $"the client has {_backlog.Count} unfinished requests, its backlog capacity."));
        }

        if (_limits?.MaxPriority is { } ceiling && (request.Priority ?? model.Options.DefaultPriority) > ceiling)
        {
            request = request with { Priority = ceiling };
        }

        var timeout = request.Timeout is { } asked && asked > TimeSpan.Zero ? asked : model.Options.DefaultTimeout ?? _options.DefaultTimeout;
        timeout = timeout < _options.MaxTimeout ? timeout : _options.MaxTimeout;
        var deadline = now + timeout;
        var target = route.Sequence?.Batcher ?? Choose(model);
        var sequence = route.Fresh ? Begin(request.Sequence!.Id, model.Name, target) : route.Sequence;
        var pending = new Pending(target, deadline, new BatchItem(ClientId, request, now, deadline), sequence);
        _backlog.TryAdd(request.RequestId, pending, out var warn);
        var warning = warn ? new BacklogWarning(_backlog.Count, _backlog.Capacity) : null;

        if (route.Hold)
        {
            Hold(pending, route.Sequence!);
            return new Admission(null, warning, timeout, target.Silo);
        }

        var (refusal, mayBeHeld) = await ForwardAsync(pending);
        if (refusal is not null)
        {
            // The warning (if this request crossed the mark) still goes out: the crossing was real and is not repeated.
            return new Admission(refusal, warning, MayBeHeld: mayBeHeld);
        }

        // Where it went: a batcher that could not be reached may have passed it to another.
        return new Admission(null, warning, timeout, pending.Batcher.Silo);
    }

    public async Task<InferError?> CancelAsync(string requestId)
    {
        if (!_backlog.Remove(requestId, out var pending))
        {
            return new InferError(ErrorCode.BadRequest, $"no request with id '{requestId}' is in flight.");
        }

        Recent.Ended(requestId);

        if (pending!.Held)
        {
            // Never forwarded: its sequence's queue skips it.
            return null;
        }

        // The cancel reaches the batcher before the sequence's next request can: it never sees two of one sequence.
        await CancelAtBatcherAsync(pending.Batcher.ToString(), [requestId]);
        Ended(pending, completed: false);
        return null;
    }

    public async Task CloseAsync()
    {
        if (_closed)
        {
            return;
        }

        _closed = true;
        _expiry?.Dispose();
        var forwarded = _backlog.Entries.Values.Where(p => !p.Held).ToLookup(p => p.Batcher.ToString(), p => p.Id);
        var sequences = _sequences.Values.ToLookup(s => s.Batcher.ToString(), s => s.Id);
        _backlog.Clear();
        _sequences.Clear();

        // Queued requests first: the sequences' state is freed once nothing of theirs is left to run.
        await Task.WhenAll(forwarded.Select(g => CancelAtBatcherAsync(g.Key, [.. g])));
        await EndAtBatchersAsync(sequences);
        DeactivateOnIdle();
    }

    public Task CompletedAsync(ImmutableArray<string> requestIds)
    {
        foreach (var id in requestIds)
        {
            if (_backlog.Remove(id, out var pending))
            {
                Recent.Ended(id);
                Ended(pending!, completed: true);
            }
        }

        return Task.CompletedTask;
    }

    public Task<SessionStatus> GetStatusAsync()
        => Task.FromResult(new SessionStatus(_backlog.Count, _backlog.Capacity, _bucket.Available, _closed, _sequences.Count));

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _expiry?.Dispose();
        if (_sequences.Count > 0)
        {
            // Nobody can reach them once the session has forgotten them: free their state now rather than at their expiry.
            var sequences = _sequences.Values.ToLookup(s => s.Batcher.ToString(), s => s.Id);
            _sequences.Clear();
            await EndAtBatchersAsync(sequences);
        }
    }

    /// <summary>
    /// Takes the client's limits as its frontend sent them: a changed rate or burst starts a new (full) bucket, a changed
    /// capacity resizes the backlog (what it holds stays). Limits change only with the configuration, so this is rare.
    /// </summary>
    private void Apply(ClientLimits? limits)
    {
        if (limits == _limits)
        {
            return;
        }

        _limits = limits;
        var rate = limits?.RatePerSecond ?? _options.RatePerSecond;
        var burst = limits?.Burst ?? _options.Burst;
        if (rate != _bucket.RatePerSecond || burst != _bucket.Burst)
        {
            _bucket = new TokenBucket(rate, burst, time);
        }

        var capacity = limits?.BacklogCapacity ?? _options.BacklogCapacity;
        if (capacity != _backlog.Capacity)
        {
            _backlog = _backlog.WithCapacity(capacity);
        }
    }

    /// <summary>The refusal for a model that cannot take requests now, or null.</summary>
    private static InferError? Unavailable(ModelEntry model) => model.State == ModelState.Ready && model.Instances.Count > 0
        ? null
        : new InferError(ErrorCode.ModelUnavailable, model.State == ModelState.Failed
            ? ModelLoadError.ForClients(model.Name, model.Errors)
            : $"model '{model.Name}' is still loading; retry shortly.", model.State == ModelState.Loading ? 1000 : null);

    /// <summary>
    /// Gives a refused request's token back when the refusal is the grid's doing (it could not take the request now:
    /// <c>overloaded</c>, <c>model_unavailable</c>, <c>internal</c>); bad input and the client's own limits keep it spent.
    /// </summary>
    private void RefundIfTheGrids(InferError refusal)
    {
        if (refusal.Code is ErrorCode.Overloaded or ErrorCode.ModelUnavailable or ErrorCode.Internal)
        {
            _bucket.Refund();
        }
    }

    /// <summary>A batcher for a request of <paramref name="model"/> that no sequence pins: this silo's unless it is backed up.</summary>
    private BatcherKey Choose(ModelEntry model) => load.Choose(model.Name, catalog.PickDevice(model)!, model.Options.MaxBatchSize);

    /// <summary>
    /// Forwards an admitted request to its batcher. On a refusal, or a batcher that could not be reached, the request
    /// leaves the backlog, and its token is refunded when the refusal is the grid's; <c>MayBeHeld</c> when the batcher
    /// may have queued it all the same.
    /// </summary>
    private async Task<(InferError? Refusal, bool MayBeHeld)> ForwardAsync(Pending pending, bool mayRetry = true)
    {
        var request = pending.Item.Request;
        var batcherKey = pending.Batcher.ToString();
        if (pending.Sequence is { } sequence)
        {
            sequence.Running = pending.Id;
        }

        InferError? refusal;
        var mayBeHeld = false;
        var siloLost = false;
        try
        {
            refusal = await GrainFactory.GetGrain<IBatcherGrain>(batcherKey).EnqueueAsync(pending.Item);
        }
        catch (Exception ex) when (mayRetry && Unreached(ex) && pending.Sequence is null && Rechoose(pending) is { } other)
        {
            // The batcher's silo refused the connection (it died, and membership has not said so yet) or was declared
            // dead with the request: the request never ran there, so it goes to a batcher left, at once.
            LogForwardRetried(logger, ex.GetType().Name, request.Model, batcherKey, other.ToString());
            pending.Batcher = other;
            return await ForwardAsync(pending, mayRetry: false);
        }
        catch (Exception ex)
        {
            LogForwardFailed(logger, ex, request.Model, batcherKey);
            // An unreachable batcher sits on a silo that died: once membership says so, a retry goes to a silo left.
            // Any other failure to reach it (a timeout) is as passing: a retry a second later.
            siloLost = Unreached(ex);
            refusal = new InferError(ErrorCode.ModelUnavailable, $"model '{request.Model}' could not take the request: {ex.GetType().Name}.", siloLost ? SiloLostRetryMs : UnreachableRetryMs);
            metrics.Refused(request.Model, ErrorCode.ModelUnavailable);

            // A timeout may come after the batcher queued it: the request may yet run, and read its inputs.
            mayBeHeld = true;
        }

        if (refusal is null)
        {
            return pending.Sequence is { } accepted ? await SequenceAcceptedAsync(pending, accepted) : (null, false);
        }

        _backlog.Remove(pending.Id, out _);
        RefundIfTheGrids(refusal);
        if (pending.Sequence is { } refused)
        {
            refusal = await SequenceRefusedAsync(pending, refused, refusal, siloLost);
        }

        return (refusal, mayBeHeld);
    }

    private static bool Unreached(Exception ex) => ex is SiloUnavailableException or OrleansMessageRejectionException;

    /// <summary>
    /// After a request's batcher could not be reached: its silo leaves the choice of batchers, and the request gets
    /// another batcher, or null when there is none but the one that failed (it then ends with the failure).
    /// </summary>
    private BatcherKey? Rechoose(Pending pending)
    {
        var failed = pending.Batcher;
        load.Unreachable(failed.Silo);
        if (!catalog.TryGet(pending.Item.Request.Model, out var model) || model.State != ModelState.Ready)
        {
            return null;
        }

        var other = Choose(model);
        return other == failed ? null : other;
    }

    private async Task CancelAtBatcherAsync(string batcherKey, ImmutableArray<string> ids)
    {
        try
        {
            await GrainFactory.GetGrain<IBatcherGrain>(batcherKey).CancelAsync(ClientId, ids);
        }
        catch (Exception ex)
        {
            // The slots are released either way; a batcher that missed the cancel runs the work and its result is dropped
            // by the frontend, which no longer waits for it.
            LogCancelFailed(logger, ex, batcherKey);
        }
    }

    /// <summary>
    /// Releases slots whose deadline passed more than <see cref="ClientSessionOptions.OrphanGrace"/> ago with no completion:
    /// a batcher always reports an end, so these are requests whose batcher's silo died.
    /// </summary>
    private void ReclaimOrphans(DateTimeOffset now)
    {
        var cutoff = now - _options.OrphanGrace;
        foreach (var (id, pending) in _backlog.Entries.Where(e => e.Value.Deadline < cutoff).ToList())
        {
            _backlog.Remove(id, out _);
            Ended(pending, completed: false);
            LogOrphan(logger, ClientId, id, pending.Batcher.ToString());
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Forwarding a request of model {Model} to batcher {Batcher} failed")]
    private static partial void LogForwardFailed(ILogger logger, Exception ex, string model, string batcher);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Batcher {Batcher} of model {Model} could not be reached ({Reason}); the request goes to {Other}")]
    private static partial void LogForwardRetried(ILogger logger, string reason, string model, string batcher, string other);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cancelling at batcher {Batcher} failed")]
    private static partial void LogCancelFailed(ILogger logger, Exception ex, string batcher);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId}: request {RequestId} at {Batcher} never completed; its backlog slot is reclaimed")]
    private static partial void LogOrphan(ILogger logger, string clientId, string requestId, string batcher);
}
