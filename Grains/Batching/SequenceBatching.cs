using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// Sequence batching for stateful models. A sequence is keyed by its client's session and its id and lives in a
/// <see cref="SequenceTable"/> from its start until its end, its expiry after <c>idle_timeout_ms</c> idle, or its
/// freeing; its state lives with the model version it started on, next to the device. Batches are cut as dynamic
/// batching cuts them, from the queue in its order, but each takes at most one request per sequence, and only a
/// sequence's oldest pending request while none of it runs, so that a sequence's requests run one per batch in the order
/// they were accepted while other sequences batch beside them.
/// </summary>
internal sealed class SequenceBatching : IBatchScheduler
{
    /// <summary>Requests of one sequence that may wait behind each other; past it a request is refused sequence_busy.</summary>
    public const int MaxPending = 64;

    // While it holds sequences the batcher wakes at least this often and asks to stay activated: their state is in it.
    private static readonly TimeSpan KeepAliveEvery = TimeSpan.FromMinutes(1);

    private static readonly SequenceOptions DefaultLimits = new();

    // Offered to a start refused at max_sequences when no sequence is idle to expire soon.
    private const int FullRetryAfterMs = 1000;

    private readonly BatcherContext _context;
    private readonly TimeProvider _time;
    private readonly DeviceBatches _batches;
    private readonly SequenceTable _table;
    private readonly List<QueuedRequest> _dropped = [];
    private readonly Func<QueuedRequest, QueueChoice> _choose;
    private readonly Action<QueuedRequest, ItemOutcome?> _ran;
    private readonly Action<QueuedRequest> _ended;
    private readonly Func<List<QueuedRequest>, IReadOnlyList<InferRequest>, IReadOnlyList<ItemOutcome>> _run;

    // The states of the batch on the device, refilled for each: the device runs one batch at a time. Device thread only.
    private readonly List<SequenceState> _states = [];
    private ModelOptions _options;
    private IInferenceModel _serving;
    private DateTimeOffset _keptAliveAt = DateTimeOffset.MinValue;

    public SequenceBatching(BatcherContext context, ModelOptions options, IStatefulModel model)
    {
        _context = context;
        _time = context.Time;
        _batches = new DeviceBatches(context);
        _table = new SequenceTable(context.Key, context.Metrics);
        _options = options;
        _serving = model;
        _choose = Choose;
        _ran = Ran;
        _ended = Ended;
        _run = RunOnDevice;
    }

    public int Running => _batches.Running;

    public int Active => 0;

    public bool Idle => _batches.Idle;

    public BatchStats Stats => _batches.Stats;

    public int Held => _table.Count;

    private SequenceOptions Limits => _options.Sequence ?? DefaultLimits;

    public void Serve(ModelOptions options, IInferenceModel model) => (_options, _serving) = (options, model);

    public SchedulerCheck Check(IInferenceModel model, BatchItem item)
    {
        var name = _context.Key.Model;
        if (model is not IStatefulModel stateful)
        {
            return BatchSchedulers.ChangedKind(name);
        }

        if (item.Request.Sequence is not { Id.Length: > 0 } control)
        {
            return Refused(ErrorCode.InvalidInput, $"model '{name}' is stateful: every request names its sequence (sequence_id, and sequence_start on the first).");
        }

        var entry = _table.Find(item.ClientId, control.Id);
        if (control.Start)
        {
            if (entry is not null)
            {
                return Refused(ErrorCode.SequenceExists, $"sequence '{control.Id}' is already running on model '{name}'; end it first, or start another.");
            }

            if (_table.Count >= Limits.MaxSequences)
            {
                var next = _table.NextExpiry(Limits.IdleTimeout);
                var retry = next == DateTimeOffset.MaxValue ? FullRetryAfterMs : Math.Max(1, (int)Math.Ceiling((next - _time.GetUtcNow()).TotalMilliseconds));
                return new SchedulerCheck(new InferError(ErrorCode.Overloaded, $"model '{name}' holds {_table.Count} sequences here, its max_sequences; retry in {retry} ms.", retry), 0);
            }
        }
        else if (entry is null)
        {
            return Refused(ErrorCode.UnknownSequence, $"sequence '{control.Id}' is not running on model '{name}' (never started, ended, expired after {Limits.IdleTimeout.TotalMilliseconds:F0} ms idle, or lost with its silo); start it again with sequence_start.");
        }
        else if (entry.Pending.Count >= MaxPending)
        {
            return Refused(ErrorCode.SequenceBusy, $"sequence '{control.Id}' already has {entry.Pending.Count} requests waiting; wait for their results.");
        }
        else
        {
            stateful = entry.Model;
        }

        var check = stateful.Check(item.Request);
        if (check.Error is not null)
        {
            return new SchedulerCheck(check.Error, 0);
        }

        return check.Rows == 1
            ? new SchedulerCheck(null, 1, null, entry?.Lease)
            : Refused(ErrorCode.InvalidInput, $"a request of a sequence is one row of model '{name}'; this one has {check.Rows}.");
    }

    public void Admitted(QueuedRequest q)
    {
        var control = q.Item.Request.Sequence!;
        var entry = control.Start ? _table.Open(q) : _table.Find(q.Item.ClientId, control.Id)!;
        if (control.Start && Limits.Window is { } window)
        {
            entry.Window = new SlidingWindow(window);
        }

        entry.Pending.Add(q);
        _table.Busy(entry);
        q.Stateful = entry;
        q.OnEnd = _ended;
    }

    public double ExpectedWaitMs(long rowsAhead, int rows) => _batches.ExpectedWaitMs(rowsAhead, rows, _options, _serving);

    public DateTimeOffset Dispatch(DateTimeOffset now)
    {
        _table.Expire(now, Limits.IdleTimeout);
        var queue = _context.Queue;
        var blocked = false;
        while (queue.Count > 0 && _batches.Running < _options.MaxConcurrentBatches)
        {
            if (queue.Rows < _options.MaxBatchSize && _time.GetElapsedTime(queue.OldestEnqueuedAt) < _options.MaxWait)
            {
                break;
            }

            var batch = queue.TakeWhere(_options.MaxBatchSize, _choose, _dropped);
            EndDropped();
            if (batch.Count == 0)
            {
                // Every queued request waits behind its sequence's running one: that batch's end pumps again.
                blocked = true;
                break;
            }

            // Sequences kept on an older version through a rollout run apart from the serving version's.
            _batches.StartByVersion(batch, _run, _ran);
        }

        var due = _table.NextExpiry(Limits.IdleTimeout);
        if (_table.Count > 0)
        {
            if (now - _keptAliveAt >= KeepAliveEvery)
            {
                _context.Host.KeepAlive();
                _keptAliveAt = now;
            }

            due = Min(due, now + KeepAliveEvery);
        }

        return !blocked && queue.Count > 0 && _batches.Running < _options.MaxConcurrentBatches
            ? Min(due, now + (_options.MaxWait - _time.GetElapsedTime(queue.OldestEnqueuedAt)))
            : due;
    }

    public void Cancelled()
    {
        // A running request's batch-mates still need its batch: it runs (its sequence's state advances), and its result
        // is dropped.
    }

    /// <summary>Frees every sequence: the batcher is going, and their state with it.</summary>
    public List<QueuedRequest> Abort()
    {
        _table.CloseAll();
        return [];
    }

    public Task WhenIdleAsync() => _batches.WhenIdleAsync();

    public void EndSequences(string clientId, IReadOnlyList<string> sequenceIds)
    {
        foreach (var id in sequenceIds)
        {
            if (_table.Find(clientId, id) is { } entry)
            {
                Free(entry);
            }
        }
    }

    /// <summary>Closes the sequence now, or once its request on the device has run.</summary>
    private void Free(SequenceEntry entry)
    {
        if (entry.Running)
        {
            entry.EndRequested = true;
        }
        else
        {
            _table.Close(entry);
        }
    }

    /// <summary>A queued request goes into the batch being cut if it is its sequence's next and none of it runs; one
    /// whose sequence is gone cannot run.</summary>
    private QueueChoice Choose(QueuedRequest q)
    {
        var entry = q.Stateful!;
        if (entry.Closed)
        {
            return QueueChoice.Drop;
        }

        if (entry.Running || entry.Pending.Count == 0 || entry.Pending[0] != q)
        {
            return QueueChoice.Skip;
        }

        entry.Pending.RemoveAt(0);
        entry.Running = true;
        return QueueChoice.Take;
    }

    /// <summary>Runs a batch of one version with each request's sequence state. Device thread only.</summary>
    private IReadOnlyList<ItemOutcome> RunOnDevice(List<QueuedRequest> batch, IReadOnlyList<InferRequest> requests)
    {
        try
        {
            foreach (var q in batch)
            {
                _states.Add(q.Stateful!.State);
            }

            return ((IStatefulModel)batch[0].Lease.Model).Run(requests, _states);
        }
        finally
        {
            _states.Clear();
        }
    }

    /// <summary>A request of a sequence has run: its result enters the sequence's window, if it keeps one; the sequence
    /// closes after its end, after a start that failed (nothing was kept: the client may start again), or when it was
    /// freed meanwhile.</summary>
    private void Ran(QueuedRequest q, ItemOutcome? outcome)
    {
        var entry = q.Stateful!;
        entry.Running = false;
        if (outcome is { Error: null, Outputs.IsDefault: false } ok && entry.Window is { } window)
        {
            q.Window = window.Add(ok.Outputs, last: q.Item.Request.Sequence!.End);
        }

        if (entry.Closed)
        {
            _table.Landed(entry);
            return;
        }

        var control = q.Item.Request.Sequence!;
        if (control.End || entry.EndRequested || (control.Start && outcome is not { Error: null }))
        {
            _table.Close(entry);
        }
    }

    /// <summary>A request of a sequence ended, whichever way: the sequence is idle once nothing of it is left. One that
    /// ended with an error before it ran (expired, dropped, shut out) closes its sequence as it would have had it run: an
    /// end frees the state, and a failed start leaves nothing to go on from. A cancel ends that request only.</summary>
    private void Ended(QueuedRequest q)
    {
        var entry = q.Stateful!;
        entry.Pending.Remove(q);
        if (!q.Running && !q.Cancelled && q.Item.Request.Sequence is { } control && (control.End || control.Start))
        {
            Free(entry);
        }

        _table.Idle(entry, _time.GetUtcNow());
    }

    /// <summary>Ends the queued requests whose sequence closed before they ran.</summary>
    private void EndDropped()
    {
        if (_dropped.Count == 0)
        {
            return;
        }

        var outcomes = new List<RequestOutcome>(_dropped.Count);
        foreach (var q in _dropped)
        {
            q.End();
            var error = new InferError(ErrorCode.UnknownSequence, $"sequence '{q.Item.Request.Sequence!.Id}' of model '{_context.Key.Model}' ended, expired or was freed before this request ran; start it again with sequence_start.");
            outcomes.Add(new RequestOutcome(q, new Delivery(q.Item.ClientId, q.Item.Request.RequestId, null, error)));
        }

        _dropped.Clear();
        _ = _context.Host.Finish(outcomes, _time.GetUtcNow(), ordered: false);
    }

    private static SchedulerCheck Refused(ErrorCode code, string message) => new(new InferError(code, message), 0);

    private static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;
}
