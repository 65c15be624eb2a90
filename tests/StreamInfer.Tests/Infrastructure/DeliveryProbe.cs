using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Threading.Channels;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>
/// Stands in for a frontend in grain tests: receives deliveries as a grain observer and lets a test await them with a
/// deadline.
/// </summary>
public sealed class DeliveryProbe : IDeliveryObserver
{
    private readonly Channel<Delivery> _deliveries = Channel.CreateUnbounded<Delivery>();
    private readonly ConcurrentQueue<DeliveryBatch> _batches = new();

    private DeliveryProbe()
    {
    }

    public string ReplyTo { get; } = $"probe-{Guid.NewGuid():N}";

    /// <summary>Every observer call received so far.</summary>
    public IReadOnlyCollection<DeliveryBatch> Batches => _batches;

    /// <summary>The observer named in <see cref="Request"/>s.</summary>
    public IDeliveryObserver? Observer { get; private set; }

    /// <summary>A probe that receives through a grain observer.</summary>
    public static Task<DeliveryProbe> SubscribeAsync(IClusterClient client)
    {
        var probe = new DeliveryProbe();
        // Orleans holds the object weakly; the probe's own property keeps it alive as long as the test holds it.
        probe.Observer = client.CreateObjectReference<IDeliveryObserver>(probe);
        return Task.FromResult(probe);
    }

    /// <summary>Waits for the next <paramref name="count"/> deliveries, failing after <paramref name="timeout"/>.</summary>
    public async Task<List<Delivery>> ReceiveAsync(int count, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(15));
        var received = new List<Delivery>(count);
        try
        {
            while (received.Count < count)
            {
                received.Add(await _deliveries.Reader.ReadAsync(cts.Token));
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"received {received.Count} of {count} deliveries before the deadline.");
        }

        return received;
    }

    /// <summary>Deliveries that arrived and were not yet received.</summary>
    public int Unread => _deliveries.Reader.Count;

    public InferRequest Request(string id, string model = "echo", TimeSpan? timeout = null, float value = 1)
        => new(id, model, [new NamedTensor("x", Tensors.Floats([1, 2], value, value + 1))], null, timeout, ReplyTo, ReplyObserver: Observer);

    public Task DeliverAsync(DeliveryBatch batch)
    {
        _batches.Enqueue(batch);
        foreach (var delivery in batch.Items)
        {
            _deliveries.Writer.TryWrite(delivery);
        }

        return Task.CompletedTask;
    }
}

public static class Tensors
{
    public static Tensor Floats(long[] shape, params float[] values)
    {
        var data = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, data, 0, data.Length);
        return new Tensor(TensorElementType.Float32, [.. shape], data, ImmutableArray<string>.Empty);
    }

    public static Tensor Longs(long[] shape, params long[] values)
    {
        var data = new byte[values.Length * 8];
        Buffer.BlockCopy(values, 0, data, 0, data.Length);
        return new Tensor(TensorElementType.Int64, [.. shape], data, ImmutableArray<string>.Empty);
    }
}
