using System.Buffers.Binary;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>One message from the server: text (a JSON frame) or binary (a header and its payload).</summary>
internal sealed record WsMessage(WebSocketMessageType Type, byte[] Bytes)
{
    /// <summary>A text frame's JSON.</summary>
    public JsonElement Json
    {
        get
        {
            Assert.True(Type == WebSocketMessageType.Text, "expected a text frame, got a binary one.");
            using var document = JsonDocument.Parse(Bytes);
            return document.RootElement.Clone();
        }
    }

    /// <summary>A binary message's JSON header.</summary>
    public JsonElement Header => BinaryFrames.Split(this).Header;

    /// <summary>The bytes of the output <paramref name="name"/>, as its header's <c>bytes</c> range names them.</summary>
    public byte[] Output(string name)
    {
        var (header, payload) = BinaryFrames.Split(this);
        var range = header.GetProperty("outputs").GetProperty(name).GetProperty("bytes");
        return payload.AsSpan(range[0].GetInt32(), range[1].GetInt32()).ToArray();
    }
}

/// <summary>The binary frame layout, written and read independently of the server's code.</summary>
internal static class BinaryFrames
{
    /// <summary>A binary message: the header's length (4 bytes, little-endian), the header as JSON, the payload.</summary>
    public static byte[] Build(object header, params byte[][] payload)
        => Build(JsonSerializer.SerializeToUtf8Bytes(header), payload);

    public static byte[] Build(byte[] header, params byte[][] payload)
    {
        var message = new byte[4 + header.Length + payload.Sum(p => p.Length)];
        BinaryPrimitives.WriteInt32LittleEndian(message, header.Length);
        header.CopyTo(message, 4);
        var offset = 4 + header.Length;
        foreach (var part in payload)
        {
            part.CopyTo(message, offset);
            offset += part.Length;
        }

        return message;
    }

    public static (JsonElement Header, byte[] Payload) Split(WsMessage message)
    {
        Assert.True(message.Type == WebSocketMessageType.Binary, $"expected a binary message, got text: {Encoding.UTF8.GetString(message.Bytes)}");
        var length = BinaryPrimitives.ReadInt32LittleEndian(message.Bytes);
        using var document = JsonDocument.Parse(message.Bytes.AsMemory(4, length));
        return (document.RootElement.Clone(), message.Bytes[(4 + length)..]);
    }

    /// <summary>JSON <c>data</c> values in the raw layout: numbers little-endian, bool one byte, strings length-prefixed.</summary>
    public static byte[] Encode(string dtype, IEnumerable<JsonElement> values)
    {
        var bytes = new List<byte>();
        foreach (var v in values)
        {
            switch (dtype)
            {
                case "float32": Append(bytes, 4, s => BinaryPrimitives.WriteSingleLittleEndian(s, v.GetSingle())); break;
                case "float16": Append(bytes, 2, s => BinaryPrimitives.WriteHalfLittleEndian(s, (Half)v.GetDouble())); break;
                case "float64": Append(bytes, 8, s => BinaryPrimitives.WriteDoubleLittleEndian(s, v.GetDouble())); break;
                case "int64": Append(bytes, 8, s => BinaryPrimitives.WriteInt64LittleEndian(s, v.GetInt64())); break;
                case "int32": Append(bytes, 4, s => BinaryPrimitives.WriteInt32LittleEndian(s, v.GetInt32())); break;
                case "int16": Append(bytes, 2, s => BinaryPrimitives.WriteInt16LittleEndian(s, v.GetInt16())); break;
                case "int8": bytes.Add(unchecked((byte)v.GetSByte())); break;
                case "uint8": bytes.Add(v.GetByte()); break;
                case "bool": bytes.Add(v.GetBoolean() ? (byte)1 : (byte)0); break;
                case "string":
                    var text = Encoding.UTF8.GetBytes(v.GetString()!);
                    Append(bytes, 4, s => BinaryPrimitives.WriteInt32LittleEndian(s, text.Length));
                    bytes.AddRange(text);
                    break;
                default: throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null);
            }
        }

        return [.. bytes];
    }

    /// <summary><see cref="Encode(string, IEnumerable{JsonElement})"/> of values written as C# literals.</summary>
    public static byte[] Encode(string dtype, params object[] values)
        => Encode(dtype, JsonSerializer.SerializeToElement(values).EnumerateArray());

    private static void Append(List<byte> bytes, int size, SpanAction write)
    {
        Span<byte> span = stackalloc byte[size];
        write(span);
        bytes.AddRange(span);
    }

    private delegate void SpanAction(Span<byte> span);
}

/// <summary>A WebSocket client for tests that keeps each message's kind: a background loop reads every message whole.</summary>
internal sealed class BinaryWsClient : IAsyncDisposable
{
    private readonly ClientWebSocket _socket = new();
    private readonly Channel<WsMessage> _messages = Channel.CreateUnbounded<WsMessage>();
    private Task _receiver = Task.CompletedTask;

    public static async Task<BinaryWsClient> ConnectAsync(Uri uri)
    {
        var client = new BinaryWsClient();
        await client._socket.ConnectAsync(uri, CancellationToken.None);
        client._receiver = Task.Run(client.ReceiveLoopAsync);
        return client;
    }

    public Task SendBinaryAsync(byte[] message) => _socket.SendAsync(message, WebSocketMessageType.Binary, endOfMessage: true, CancellationToken.None);

    /// <summary>One binary message sent as <paramref name="fragments"/>, each a WebSocket frame of its own.</summary>
    public async Task SendFragmentsAsync(IReadOnlyList<byte[]> fragments)
    {
        for (var i = 0; i < fragments.Count; i++)
        {
            await _socket.SendAsync(fragments[i], WebSocketMessageType.Binary, endOfMessage: i == fragments.Count - 1, CancellationToken.None);
        }
    }

    public Task SendTextAsync(object frame) => _socket.SendAsync(JsonSerializer.SerializeToUtf8Bytes(frame), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);

    /// <summary>The next message, failing after <paramref name="timeout"/>.</summary>
    public async Task<WsMessage> NextAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(15));
        try
        {
            return await _messages.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException("no message arrived before the deadline.");
        }
        catch (ChannelClosedException)
        {
            throw new InvalidOperationException($"the connection closed ({_socket.CloseStatus}) before a message arrived.");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_socket.State == WebSocketState.Open)
            {
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
            }

            await _receiver.WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception ex) when (ex is WebSocketException or TimeoutException or ObjectDisposedException)
        {
        }

        _socket.Dispose();
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var count = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (count == buffer.Length)
                    {
                        Array.Resize(ref buffer, buffer.Length * 2);
                    }

                    result = await _socket.ReceiveAsync(buffer.AsMemory(count), CancellationToken.None);
                    count += result.Count;
                }
                while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return;
                }

                _messages.Writer.TryWrite(new WsMessage(result.MessageType, buffer[..count]));
            }
        }
        catch (WebSocketException)
        {
        }
        finally
        {
            _messages.Writer.TryComplete();
        }
    }
}
