using System.Buffers;
using System.Buffers.Binary;
using System.Net.WebSockets;
using System.Text.Json;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>How reading a message ended.</summary>
internal enum MessageEnd
{
    /// <summary>Read whole, within its limit.</summary>
    Read,

    /// <summary>Past its limit: read to its end and dropped.</summary>
    OverLimit,

    /// <summary>Past <see cref="MessageReader.DiscardMultiple"/> times its limit: not read further; the connection is to be closed (1009).</summary>
    Endless,

    /// <summary>The client closed meanwhile.</summary>
    Closed,
}

/// <summary>
/// Reads a WebSocket connection's messages: a text message into a buffer rented from the pool, grown for a large message
/// and given back for a small one once the message has been handled (<see cref="Shrink"/>), so that a connection holds
/// <see cref="BufferBytes"/> between messages whatever it once received; a binary message into a pooled buffer of its
/// own, grown as its bytes arrive (sized ahead from its header by <see cref="PreSizeBytes"/> at most, so that a header
/// alone pins little). Every read within a message is counted in the connection's <see cref="FrameBudget"/>, and waits
/// while the budget is in debt. A message dropped for its size is read no further than <see cref="DiscardMultiple"/>
/// times its limit. Counts the bytes of the message being read (<see cref="BytesRead"/>). Used by the receive loop only.
/// </summary>
internal sealed class MessageReader(WebSocket socket, FrontendOptions options, FrameBudget budget) : IDisposable
{
    /// <summary>The buffer a connection holds between messages.</summary>
    public const int BufferBytes = 16 * 1024;

    /// <summary>The most a binary message's buffer is sized ahead of the bytes that arrived.</summary>
    public const int PreSizeBytes = 1 << 20;

    /// <summary>A message dropped for its size (or for the budget) is read to this many times its limit at most.</summary>
    public const int DiscardMultiple = 4;

    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(BufferBytes);
    private RentedBytes? _binary;

    /// <summary>Bytes of the buffers held now (as the pool rounded them): the receive buffer and a binary message's being read.</summary>
    public int Held => Volatile.Read(ref _buffer).Length + (Volatile.Read(ref _binary)?.Capacity ?? 0);

    /// <summary>Bytes read of the current message so far.</summary>
    public long BytesRead { get; private set; }

    /// <summary>The text message just read (<see cref="ReadTextAsync"/>'s count of it).</summary>
    public ReadOnlyMemory<byte> Text(int count) => _buffer.AsMemory(0, count);

    /// <summary>Reads the first fragment of the next message into the buffer.</summary>
    public ValueTask<ValueWebSocketReceiveResult> ReadFirstAsync(CancellationToken cancellationToken)
    {
        BytesRead = 0;
        return ReadAsync(_buffer.AsMemory(), throttled: false, cancellationToken);
    }

    /// <summary>
    /// The <c>id</c> of a text message whose first fragment (<paramref name="count"/> bytes) is in the buffer, when one
    /// of the object's members before the fragment's end names it: a bounded scan of what was read, no parse. Null
    /// otherwise.
    /// </summary>
    public string? PeekId(int count, bool whole)
    {
        var reader = new Utf8JsonReader(_buffer.AsSpan(0, count), whole, default);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isId = reader.ValueTextEquals("id"u8);
                if (!reader.Read())
                {
                    return null;
                }

                if (isId)
                {
                    return reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                }

                if (!reader.TrySkip())
                {
                    return null;
                }
            }
        }
        catch (JsonException)
        {
            // Not JSON, or not an object: no id to give back.
        }

        return null;
    }

    /// <summary>After the server's close: reads and discards what the client still sends until its close, for up to
    /// <paramref name="grace"/> (then the socket is aborted).</summary>
    public async Task DiscardUntilCloseAsync(TimeSpan grace, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(grace);
        try
        {
            BytesRead = 0;
            while ((await ReadAsync(_buffer.AsMemory(), throttled: false, timeout.Token)).MessageType != WebSocketMessageType.Close)
            {
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException)
        {
            // The client did not answer in time, or went away.
        }
    }

    /// <summary>
    /// Reads the rest of a text message, whose first fragment is in the buffer, growing the buffer up to one byte past
    /// <see cref="FrontendOptions.MaxFrameBytes"/> (so that "over the limit" is observable); an oversized message is read
    /// on without being kept. The count read, and how the message ended.
    /// </summary>
    public async Task<(int Count, MessageEnd End)> ReadTextAsync(ValueWebSocketReceiveResult received, CancellationToken cancellationToken)
    {
        var count = received.Count;
        var tooLarge = count > options.MaxFrameBytes;
        while (!received.EndOfMessage)
        {
            if (tooLarge)
            {
                if (PastDiscard(options.MaxFrameBytes))
                {
                    return (0, MessageEnd.Endless);
                }

                count = 0;
            }
            else if (count == _buffer.Length)
            {
                var grown = ArrayPool<byte>.Shared.Rent(Math.Min(_buffer.Length * 2, options.MaxFrameBytes + 1));
                _buffer.AsSpan(0, count).CopyTo(grown);
                Replace(grown);
            }

            received = await ReadAsync(_buffer.AsMemory(count), throttled: true, cancellationToken);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                return (0, MessageEnd.Closed);
            }

            count += received.Count;
            tooLarge |= count > options.MaxFrameBytes;
        }

        return (count, tooLarge ? MessageEnd.OverLimit : MessageEnd.Read);
    }

    /// <summary>
    /// Reads the rest of a binary message, whose first fragment is in the buffer, into a pooled buffer of its own, grown
    /// as the bytes arrive and counted in <see cref="Held"/> while it is read. No frame when it passes
    /// <see cref="FrontendOptions.MaxBinaryBytes"/> (the rest is read and discarded) or the client closed meanwhile.
    /// </summary>
    public async Task<(RentedBytes? Frame, MessageEnd End)> ReadBinaryAsync(ValueWebSocketReceiveResult first, CancellationToken cancellationToken)
    {
        var limit = options.MaxBinaryBytes;
        var received = first;
        if (received.Count > limit)
        {
            return (null, Dropped(await DiscardRestAsync(received, limit, cancellationToken)));
        }

        var frame = new RentedBytes(received.EndOfMessage ? received.Count : Math.Min(limit, Math.Max(4 * received.Count, 64 * 1024)));
        frame.Write(_buffer.AsSpan(0, received.Count));
        Volatile.Write(ref _binary, frame);
        try
        {
            var sized = received.EndOfMessage;
            while (!received.EndOfMessage)
            {
                sized = sized || SizeFromHeader(frame, limit);
                if (frame.Length == limit)
                {
                    // At the limit and not at the end: past it, unless all that is left is an empty last fragment.
                    received = await ReadAsync(_buffer.AsMemory(), throttled: true, cancellationToken);
                    if (received.MessageType == WebSocketMessageType.Close)
                    {
                        frame.Return();
                        return (null, MessageEnd.Closed);
                    }

                    if (received.Count == 0)
                    {
                        continue;
                    }

                    frame.Return();
                    return (null, Dropped(await DiscardRestAsync(received, limit, cancellationToken)));
                }

                var room = frame.GetMemory(1);
                received = await ReadAsync(room[..Math.Min(room.Length, limit - frame.Length)], throttled: true, cancellationToken);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    frame.Return();
                    return (null, MessageEnd.Closed);
                }

                frame.Advance(received.Count);
            }

            return (frame, MessageEnd.Read);
        }
        catch
        {
            frame.Return();
            throw;
        }
        finally
        {
            Volatile.Write(ref _binary, null);
        }
    }

    /// <summary>Reads and discards the rest of a message whose limit is <paramref name="limit"/>: <see cref="MessageEnd.Read"/>
    /// once at its end, <see cref="MessageEnd.Endless"/> past <see cref="DiscardMultiple"/> times the limit.</summary>
    public async Task<MessageEnd> DiscardRestAsync(ValueWebSocketReceiveResult received, int limit, CancellationToken cancellationToken)
    {
        while (!received.EndOfMessage)
        {
            if (PastDiscard(limit))
            {
                return MessageEnd.Endless;
            }

            received = await ReadAsync(_buffer.AsMemory(), throttled: true, cancellationToken);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                return MessageEnd.Closed;
            }
        }

        return MessageEnd.Read;
    }

    /// <summary>After a large message: the buffer goes back to the pool, and a small one takes its place.</summary>
    public void Shrink()
    {
        if (_buffer.Length > BufferBytes)
        {
            Replace(ArrayPool<byte>.Shared.Rent(BufferBytes));
        }
    }

    public void Dispose()
    {
        Volatile.Write(ref _binary, null);
        ArrayPool<byte>.Shared.Return(Interlocked.Exchange(ref _buffer, []));
    }

    private static MessageEnd Dropped(MessageEnd discarded) => discarded == MessageEnd.Read ? MessageEnd.OverLimit : discarded;

    private bool PastDiscard(int limit) => BytesRead > (long)DiscardMultiple * limit;

    private void Replace(byte[] buffer) => ArrayPool<byte>.Shared.Return(Interlocked.Exchange(ref _buffer, buffer));

    /// <summary>Every read of the socket: counted in the message's bytes. Within a message (<paramref name="throttled"/>:
    /// the first fragment is counted as the message takes its place) it first waits while the budget is in debt, and is
    /// counted in it.</summary>
    private async ValueTask<ValueWebSocketReceiveResult> ReadAsync(Memory<byte> into, bool throttled, CancellationToken cancellationToken)
    {
        if (throttled)
        {
            await budget.WaitAsync(cancellationToken);
        }

        var received = await socket.ReceiveAsync(into, cancellationToken);
        BytesRead += received.Count;
        if (throttled)
        {
            budget.Read(received.Count);
        }

        return received;
    }

    /// <summary>
    /// Once the header is in, makes room for the payload its ranges declare, up to <see cref="PreSizeBytes"/> (and the
    /// limit): one resize while little is read, instead of doubling through a moderate payload, and no more than that for
    /// a declaration no bytes follow. False until the header is in.
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

        var declared = Math.Min(4 + headerLength + RequestParser.DeclaredPayloadBytes(read.Slice(4, (int)headerLength)), Math.Min(limit, PreSizeBytes));
        if (declared > read.Length)
        {
            frame.GetMemory((int)declared - read.Length);
        }

        return true;
    }
}
