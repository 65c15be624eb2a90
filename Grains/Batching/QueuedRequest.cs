using StreamInfer.Grains.Deliveries;
using StreamInfer.Grains.Models;

namespace StreamInfer.Grains.Batching;

/// <summary>A request a batcher accepted, from admission until it ends: queued, then running.</summary>
internal sealed class QueuedRequest(BatchItem item, int priority, long enqueuedAt, int rows, ModelLease lease, PreparedSequence? sequence = null)
{
    private int _ended;

    public BatchItem Item { get; } = item;

    /// <summary>The client's id and the request's: how a cancel names it.</summary>
    public (string Client, string Id) Key => (Item.ClientId, Item.Request.RequestId);

    public int Priority { get; } = priority;

    /// <summary>When it was accepted (<see cref="TimeProvider.GetTimestamp"/>).</summary>
    public long EnqueuedAt { get; } = enqueuedAt;

    /// <summary>Rows it fills along the batch axis.</summary>
    public int Rows { get; } = rows;

    /// <summary>The model version the request was checked against and runs on.</summary>
    public ModelLease Lease { get; } = lease;

    /// <summary>A decoder's sequence, prepared (prompt tokenized) at admission; null for batch models.</summary>
    public PreparedSequence? Sequence { get; } = sequence;

    /// <summary>Where its deliveries go.</summary>
    public DeliveryTarget Target => new(Item.Request.ReplyTo, Item.Request.ReplyObserver!);

    /// <summary>On the device (in a batch, or in the running set): a cancel only flags it.</summary>
    public bool Running { get; set; }

    public bool Cancelled { get; set; }

    /// <summary>A stateful model's request: the sequence it belongs to; null otherwise.</summary>
    public SequenceEntry? Stateful { get; set; }

    /// <summary>Once it has run, its sequence's window with its result in it (models that keep one); null otherwise.</summary>
    public SequenceWindow? Window { get; set; }

    /// <summary>Called once when the request ends, whichever way (its scheduler's bookkeeping); grain thread.</summary>
    public Action<QueuedRequest>? OnEnd { get; set; }

    /// <summary>Lets go of the request's model version; once, whichever way the request ended.</summary>
    public void End()
    {
        if (Interlocked.Exchange(ref _ended, 1) == 0)
        {
            Lease.Release();
            OnEnd?.Invoke(this);
        }
    }
}

/// <summary>A decoder request prepared at admission: its sequence, the version that runs it, and the cache it reserves.</summary>
internal sealed record PreparedSequence(Models.Decoding.DecodeSequence Sequence, IDecoderModel Model, long ReservedBytes);

/// <summary>Something a scheduler produced for one request: a token, or the request's end.</summary>
internal readonly record struct RequestOutcome(QueuedRequest Request, Delivery Delivery);
