using System.Threading.Channels;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Grains.Sessions;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>A frame in the send queue, with when the grid produced its content (default: not a delivery).</summary>
internal readonly record struct Outgoing(byte[] Frame, DateTimeOffset ProducedAt);

/// <summary>
/// A connection's bounded send queue: every frame to the client goes through it, in order, to the one send loop. At 80%
/// full the client is warned (once per crossing); a client that lets it fill is not reading, and
/// <paramref name="onFull"/> drops it rather than let its frames grow memory without bound.
/// </summary>
internal sealed class FrameOutbox(int capacity, Action onFull)
{
    // Queued after a drain's last frame: the send loop closes the socket with 1001 when it reaches it.
    private static readonly byte[] GoingAway = new byte[1];

    private readonly Channel<Outgoing> _channel = Channel.CreateBounded<Outgoing>(new BoundedChannelOptions(capacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait,
    });

    private readonly SlowConsumerMark _mark = new(capacity);

    /// <summary>Queues a frame; <paramref name="producedAt"/>, when set, is when the grid produced what it carries, for
    /// the return path's latency metric.</summary>
    public void Send(byte[] frame, DateTimeOffset producedAt = default)
    {
        if (!_channel.Writer.TryWrite(new Outgoing(frame, producedAt)))
        {
            onFull();
            return;
        }

        var queued = _channel.Reader.Count;
        if (_mark.Observe(queued))
        {
            // The queue's last 20% leaves room for this frame.
            _channel.Writer.TryWrite(new Outgoing(
                FrameWriter.Warning(queued, capacity, $"{queued} of {capacity} frames wait for this client to read them; at {capacity} the connection is closed."),
                default));
        }
    }

    /// <summary>Queues the close (1001) after the frames already queued; false when the queue is full or complete.</summary>
    public bool TryGoAway() => _channel.Writer.TryWrite(new Outgoing(GoingAway, default));

    /// <summary>Whether <paramref name="frame"/> is the close queued by <see cref="TryGoAway"/>.</summary>
    public static bool IsGoingAway(byte[] frame) => ReferenceEquals(frame, GoingAway);

    /// <summary>No frame follows: the send loop ends once the queue is empty.</summary>
    public void Complete() => _channel.Writer.TryComplete();

    public IAsyncEnumerable<Outgoing> ReadAllAsync(CancellationToken cancellationToken) => _channel.Reader.ReadAllAsync(cancellationToken);
}
