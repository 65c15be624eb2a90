using System.Buffers;
using System.Buffers.Binary;
using System.Net.WebSockets;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>
/// Reads a WebSocket connection's messages: a text message into a buffer rented from the pool, grown for a large message
/// and given back for a small one once the message has been handled (<see cref="Shrink"/>), so that a connection holds
/// <see cref="BufferBytes"/> between messages whatever it once received; a binary message into a pooled buffer of its
/// own, sized from its header. Counts the bytes of the message being read (<see cref="BytesRead"/>). Used by the
/// receive loop only.
/// </summary>
internal sealed class MessageReader(WebSocket socket, FrontendOptions options) : IDisposable
{
    /// <summary>The buffer a connection holds between messages.</summary>
    public const int BufferBytes = 16 * 1024;

    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(BufferBytes);

    /// <summary>Bytes of the buffer held now (as the pool rounded it).</summary>
    public int Held => Volatile.Read(ref _buffer).Length;

    /// <summary>Bytes read of the current message so far.</summary>
    public long BytesRead { get; private set; }

    /// <summary>The text message just read (<see cref="ReadTextAsync"/>'s count of it).</summary>
    public ReadOnlyMemory<byte> Text(int count) => _buffer.AsMemory(0, count);

    /// <summary>Reads the first fragment of the next message into the buffer.</summary>
    public ValueTask<ValueWebSocketReceiveResult> ReadFirstAsync(CancellationToken cancellationToken)
    {
        BytesRead = 0;
        return ReadAsync(_buffer.AsMemory(), cancellationToken);
    }

    /// <summary>After the server's close: reads and discards what the client still sends until its close, for up to
    /// <paramref name="grace"/> (then the socket is aborted).</summary>
    public async Task DiscardUntilCloseAsync(TimeSpan grace, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(grace);
        try
        {
            while ((await ReadFirstAsync(timeout.Token)).MessageType != WebSocketMessageType.Close)
            {
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException)
        {
            // The client did not answer in time, or went away.
        }
    }

    /// <summary>After a large message: the buffer goes back to the pool, and a small one takes its place.</summary>
    public void Shrink()
    {
        if (_buffer.Length > BufferBytes)
        {
            Replace(ArrayPool<byte>.Shared.Rent(BufferBytes));
        }
    }

    public void Dispose() => ArrayPool<byte>.Shared.Return(Interlocked.Exchange(ref _buffer, []));

    /// <summary>
    /// Reads the rest of a text message, whose first fragment is in the buffer, growing the buffer up to one byte past
    /// <see cref="FrontendOptions.MaxFrameBytes"/> (so that "over the limit" is observable); an oversized message is read
    /// to its end without being kept. The count read, and whether it is whole (within the limit); a count of -1 when
    /// the client closed meanwhile.
    /// </summary>
    public async Task<(int Count, bool Whole)> ReadTextAsync(ValueWebSocketReceiveResult received, CancellationToken cancellationToken)
    {
        var count = received.Count;
        var tooLarge = count > options.MaxFrameBytes;
        while (!received.EndOfMessage)
        {
            if (tooLarge)
            {
                count = 0;
            }
            else if (count == _buffer.Length)
            {
                var grown = ArrayPool<byte>.Shared.Rent(Math.Min(_buffer.Length * 2, options.MaxFrameBytes + 1));
                _buffer.AsSpan(0, count).CopyTo(grown);
                Replace(grown);
            }

            received = await ReadAsync(_buffer.AsMemory(count), cancellationToken);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                return (-1, false);
            }

            count += received.Count;
            tooLarge |= count > options.MaxFrameBytes;
        }

        return (count, !tooLarge);
    }

    private void Replace(byte[] buffer) => ArrayPool<byte>.Shared.Return(Interlocked.Exchange(ref _buffer, buffer));

    /// <summary>Every read of the socket: counts the message's bytes.</summary>
    private async ValueTask<ValueWebSocketReceiveResult> ReadAsync(Memory<byte> into, CancellationToken cancellationToken)
    {
        var received = await socket.ReceiveAsync(into, cancellationToken);
        BytesRead += received.Count;
        return received;
    }


    /// <summary>
    /// Reads the rest of a binary message, whose first fragment is in the buffer, into a pooled
    /// buffer of its own. Null when it passes <see cref="FrontendOptions.MaxBinaryBytes"/> (the rest is read and
    /// discarded); <c>Open</c> false when the client closed meanwhile.
    /// </summary>
    public async Task<(RentedBytes? Frame, bool Open)> ReadBinaryAsync(ValueWebSocketReceiveResult first, CancellationToken cancellationToken)
    {
        var limit = options.MaxBinaryBytes;
        var received = first;
        if (received.Count > limit)
        {
            return (null, await DiscardRestAsync(received, cancellationToken));
        }

        var frame = new RentedBytes(received.EndOfMessage ? received.Count : Math.Min(limit, Math.Max(4 * received.Count, 64 * 1024)));
        frame.Write(_buffer.AsSpan(0, received.Count));
        var sized = received.EndOfMessage;
        while (!received.EndOfMessage)
        {
            sized = sized || SizeFromHeader(frame, limit);
            if (frame.Length == limit)
            {
                // At the limit and not at the end: past it, unless all that is left is an empty last fragment.
                received = await ReadAsync(_buffer.AsMemory(), cancellationToken);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    frame.Return();
                    return (null, false);
                }

                if (received.Count == 0)
                {
                    continue;
                }

                frame.Return();
                return (null, await DiscardRestAsync(received, cancellationToken));
            }

            var room = frame.GetMemory(1);
            received = await ReadAsync(room[..Math.Min(room.Length, limit - frame.Length)], cancellationToken);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                frame.Return();
                return (null, false);
            }

            frame.Advance(received.Count);
        }

        return (frame, true);
    }

    /// <summary>
    /// Once the header is in, makes room for the payload its ranges declare (up to <paramref name="limit"/>): one resize
    /// while little is read, instead of doubling, and copying, through a large payload. False until the header is in.
    /// </summary>
    private bool SizeFromHeader(RentedBytes frame, int limit)
    {
        var read = frame.Memory.Span;
        if (read.Length < 4)
        {
            return false;
        }

        var headerLength = BinaryPrimitives.ReadUInt32LittleEndian(read);
        if (headerLength > (uint)options.MaxFrameBytes)
        {
            // Refused once read; not worth a buffer sized from it.
            return true;
        }

        if (read.Length - 4 < headerLength)
        {
            return false;
        }

        var declared = Math.Min(4 + headerLength + RequestParser.DeclaredPayloadBytes(read.Slice(4, (int)headerLength)), limit);
        if (declared > read.Length)
        {
            frame.GetMemory((int)declared - read.Length);
        }

        return true;
    }

    /// <summary>Reads and discards the rest of a message; false when the client closed meanwhile.</summary>
    public async Task<bool> DiscardRestAsync(ValueWebSocketReceiveResult received, CancellationToken cancellationToken)
    {
        while (!received.EndOfMessage)
        {
            received = await ReadAsync(_buffer.AsMemory(), cancellationToken);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                return false;
            }
        }

        return true;
    }
}
