using System.Net.WebSockets;
using System.Threading.Channels;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Grains.Sessions;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>
/// A message in the send queue: its bytes and kind (<see cref="WebSocketMessageType.Close"/>: the close queued by
/// <see cref="FrameOutbox.TryClose"/>, with its status and reason), the pooled buffer that holds them (returned once
/// sent; null when not pooled), and when the grid produced its content (default: not a delivery).
/// </summary>
internal readonly record struct Outgoing(ReadOnlyMemory<byte> Frame, WebSocketMessageType Type, RentedBytes? Pooled, DateTimeOffset ProducedAt, WebSocketCloseStatus CloseStatus = default, string? CloseReason = null);

/// <summary>
/// A connection's send queue, bounded in frames and in bytes: every message to the client goes through it, in order, to
/// the one send loop. When either budget is 80% used the client is warned (once per crossing, naming the budget); a
/// client that lets one fill is not reading, and the queue's <c>onFull</c> drops it rather than let its messages grow
/// memory without bound. A message counts against the byte budget from when it is queued until it has been sent.
/// </summary>
internal sealed class FrameOutbox
{
    private readonly Channel<Outgoing> _channel;
    private readonly int _capacity;
    private readonly long _byteBudget;
    private readonly Action<string> _onFull;
    private readonly SlowConsumerMark _frameMark;

    // Counted in KiB: the mark counts in ints, and a byte budget may pass int.MaxValue.
    private readonly SlowConsumerMark _byteMark;
    private long _bytes;

    /// <param name="capacity">Frames queued at most.</param>
    /// <param name="byteBudget">Bytes queued at most.</param>
    /// <param name="onFull">Called with the budget that was full (e.g. "4096 frames") when a message does not fit.</param>
    public FrameOutbox(int capacity, long byteBudget, Action<string> onFull)
    {
        _capacity = capacity;
        _byteBudget = byteBudget;
        _onFull = onFull;
        _frameMark = new SlowConsumerMark(capacity);
        _byteMark = new SlowConsumerMark((int)Math.Max(1, byteBudget >> 10));
        _channel = Channel.CreateBounded<Outgoing>(new BoundedChannelOptions(capacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    /// <summary>Bytes queued and not yet sent.</summary>
    public long QueuedBytes => Interlocked.Read(ref _bytes);

    /// <summary>Queues a text frame; <paramref name="producedAt"/>, when set, is when the grid produced what it carries,
    /// for the return path's latency metric.</summary>
    public void Send(byte[] frame, DateTimeOffset producedAt = default)
        => TryQueue(new Outgoing(frame, WebSocketMessageType.Text, null, producedAt));

    /// <summary>Queues a binary message held in a pooled buffer, which goes back to the pool once it is sent (or at once,
    /// when it does not fit).</summary>
    public void SendBinary(RentedBytes frame, DateTimeOffset producedAt = default)
    {
        if (!TryQueue(new Outgoing(frame.Memory, WebSocketMessageType.Binary, frame, producedAt)))
        {
            frame.Return();
        }
    }

    /// <summary>The send loop has sent <paramref name="message"/>: its bytes leave the budget, its buffer goes back.</summary>
    public void Sent(in Outgoing message)
    {
        Interlocked.Add(ref _bytes, -message.Frame.Length);
        message.Pooled?.Return();
    }

    /// <summary>Queues the close (1001) after the frames already queued; false when the queue is full or complete.</summary>
    public bool TryGoAway() => TryClose(WebSocketCloseStatus.EndpointUnavailable, "server shutting down");

    /// <summary>Queues a close with <paramref name="status"/> and <paramref name="reason"/> after the frames already
    /// queued; false when the queue is full or complete.</summary>
    public bool TryClose(WebSocketCloseStatus status, string reason)
        => _channel.Writer.TryWrite(new Outgoing(default, WebSocketMessageType.Close, null, default, status, reason));

    /// <summary>No frame follows: the send loop ends once the queue is empty.</summary>
    public void Complete() => _channel.Writer.TryComplete();

    public IAsyncEnumerable<Outgoing> ReadAllAsync(CancellationToken cancellationToken) => _channel.Reader.ReadAllAsync(cancellationToken);

    private bool TryQueue(Outgoing message)
    {
        var length = message.Frame.Length;
        var queued = Interlocked.Add(ref _bytes, length);

        // A message larger than the whole budget still goes when nothing else waits: a client that has read everything
        // is not slow.
        if (queued > _byteBudget && queued != length)
        {
            Interlocked.Add(ref _bytes, -length);
            _onFull($"{_byteBudget} bytes");
            return false;
        }

        if (!_channel.Writer.TryWrite(message))
        {
            Interlocked.Add(ref _bytes, -length);
            _onFull($"{_capacity} frames");
            return false;
        }

        var frames = _channel.Reader.Count;
        if (_frameMark.Observe(frames))
        {
            Warn(FrameWriter.Warning(frames, _capacity, "frames", $"{frames} of {_capacity} frames wait for this client to read them; at {_capacity} the connection is closed."));
        }

        if (_byteMark.Observe((int)(queued >> 10)))
        {
            Warn(FrameWriter.Warning(queued, _byteBudget, "bytes", $"{queued} of {_byteBudget} bytes wait for this client to read them; past {_byteBudget} the connection is closed."));
        }

        return true;
    }

    private void Warn(byte[] warning)
    {
        // The budgets' last 20% leave room for the warning, so it is queued past the checks.
        Interlocked.Add(ref _bytes, warning.Length);
        if (!_channel.Writer.TryWrite(new Outgoing(warning, WebSocketMessageType.Text, null, default)))
        {
            Interlocked.Add(ref _bytes, -warning.Length);
        }
    }
}
