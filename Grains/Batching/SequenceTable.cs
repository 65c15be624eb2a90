using StreamInfer.Grains.Metrics;
using StreamInfer.Grains.Models;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// One stateful sequence a batcher holds: its state (on the version it started on, whose lease it holds), the requests
/// of it accepted and not yet taken into a batch, in the order they came, and whether one of it is on the device.
/// </summary>
internal sealed class SequenceEntry(string clientId, string id, ModelLease lease, IStatefulModel model, SequenceState state)
{
    public string ClientId { get; } = clientId;

    public string Id { get; } = id;

    /// <summary>The version the sequence started on: its requests run there, and its state lives there.</summary>
    public ModelLease Lease { get; } = lease;

    public IStatefulModel Model { get; } = model;

    public SequenceState State { get; } = state;

    /// <summary>Requests accepted and not yet in a batch, oldest first: only the first may run next.</summary>
    public List<QueuedRequest> Pending { get; } = [];

    /// <summary>A request of it is on the device.</summary>
    public bool Running { get; set; }

    /// <summary>Freed while a request of it ran: it closes once that request has run.</summary>
    public bool EndRequested { get; set; }

    /// <summary>Ended, expired or freed: its state is gone, and what is still queued of it cannot run.</summary>
    public bool Closed { get; set; }

    /// <summary>Its window over an output, when its model keeps one; null otherwise.</summary>
    public SlidingWindow? Window { get; set; }

    /// <summary>Its place among the idle sequences (nothing pending or running), oldest first; null while busy.</summary>
    internal LinkedListNode<SequenceEntry>? IdleNode { get; set; }

    /// <summary>When it last became idle.</summary>
    internal DateTimeOffset IdleSince { get; set; }
}

/// <summary>
/// The stateful sequences one batcher holds, by the client's key and the sequence's id, with the idle ones in the order
/// they became idle so that expiring them looks only at the oldest. Grain thread only.
/// </summary>
internal sealed class SequenceTable(BatcherKey key, GridMetrics metrics)
{
    private readonly Dictionary<(string Client, string Id), SequenceEntry> _byKey = [];
    private readonly LinkedList<SequenceEntry> _idle = new();

    /// <summary>Sequences held.</summary>
    public int Count => _byKey.Count;

    public SequenceEntry? Find(string clientId, string id) => _byKey.GetValueOrDefault((clientId, id));

    /// <summary>Opens the sequence <paramref name="start"/> starts, on the version it was checked against, which the
    /// sequence holds from now on.</summary>
    public SequenceEntry Open(QueuedRequest start)
    {
        // The start request holds the lease already, so this hold cannot fail.
        start.Lease.TryAcquire();
        var model = (IStatefulModel)start.Lease.Model;
        var entry = new SequenceEntry(start.Item.ClientId, start.Item.Request.Sequence!.Id, start.Lease, model, model.Open());
        _byKey.Add((entry.ClientId, entry.Id), entry);
        metrics.Held(key.Model, key.Device, 1);
        return entry;
    }

    /// <summary>A request of the sequence is pending or running: it is not idle.</summary>
    public void Busy(SequenceEntry entry)
    {
        if (entry.IdleNode is { } node)
        {
            _idle.Remove(node);
            entry.IdleNode = null;
        }
    }

    /// <summary>Nothing of the sequence is pending or running any more: it expires after the idle timeout.</summary>
    public void Idle(SequenceEntry entry, DateTimeOffset now)
    {
        if (entry.Closed || entry.Running || entry.Pending.Count > 0 || entry.IdleNode is not null)
        {
            return;
        }

        entry.IdleSince = now;
        entry.IdleNode = _idle.AddLast(entry);
    }

    /// <summary>Frees the sequence: its state goes back to its model (once the request of it on the device, if any, has
    /// come off it: <see cref="Landed"/>) and its version's hold is dropped.</summary>
    public void Close(SequenceEntry entry)
    {
        if (entry.Closed)
        {
            return;
        }

        entry.Closed = true;
        Busy(entry);
        _byKey.Remove((entry.ClientId, entry.Id));
        if (!entry.Running)
        {
            entry.Model.Close(entry.State);
        }

        entry.Lease.Release();
        metrics.Held(key.Model, key.Device, -1);
    }

    /// <summary>A request of a sequence closed while it ran has come off the device: the state it was using goes back
    /// to its model.</summary>
    public void Landed(SequenceEntry entry)
    {
        if (entry.Closed && !entry.Running)
        {
            entry.Model.Close(entry.State);
        }
    }

    /// <summary>Frees every sequence idle for <paramref name="timeout"/> or longer at <paramref name="now"/>.</summary>
    public void Expire(DateTimeOffset now, TimeSpan timeout)
    {
        while (_idle.First is { } oldest && oldest.Value.IdleSince + timeout <= now)
        {
            Close(oldest.Value);
        }
    }

    /// <summary>When the oldest idle sequence expires; <see cref="DateTimeOffset.MaxValue"/> when none is idle.</summary>
    public DateTimeOffset NextExpiry(TimeSpan timeout) => _idle.First is { } oldest ? oldest.Value.IdleSince + timeout : DateTimeOffset.MaxValue;

    /// <summary>Frees every sequence.</summary>
    public void CloseAll()
    {
        foreach (var entry in _byKey.Values.ToList())
        {
            Close(entry);
        }
    }
}
