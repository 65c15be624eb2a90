using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>A WebSocket client for tests: a background loop parses every frame; tests await frames with a deadline.</summary>
public sealed class WsTestClient : IAsyncDisposable
{
    private readonly ClientWebSocket _socket = new();
    private readonly Channel<JsonElement> _frames = Channel.CreateUnbounded<JsonElement>();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private Task _receiver = Task.CompletedTask;

    public WebSocketCloseStatus? CloseStatus => _socket.CloseStatus;

    /// <summary>The subprotocol the server selected, if any.</summary>
    public string? SubProtocol => _socket.SubProtocol;

    public static async Task<WsTestClient> ConnectAsync(Uri uri, Action<ClientWebSocketOptions>? configure = null)
    {
        var client = new WsTestClient();
        configure?.Invoke(client._socket.Options);
        await client._socket.ConnectAsync(uri, CancellationToken.None);
        client._receiver = Task.Run(client.ReceiveLoopAsync);
        return client;
    }

    public Task SendAsync(string json) => SendRawAsync(Encoding.UTF8.GetBytes(json), WebSocketMessageType.Text);

    public Task SendAsync(object frame) => SendAsync(JsonSerializer.Serialize(frame));

    public async Task SendRawAsync(byte[] bytes, WebSocketMessageType type)
    {
        await _sendLock.WaitAsync();
        try
        {
            await _socket.SendAsync(bytes, type, endOfMessage: true, CancellationToken.None);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    public Task SendInferAsync(string id, string model = "echo", object? inputs = null, double? timeoutMs = null)
        => SendAsync(new Dictionary<string, object?>
        {
            ["type"] = "infer",
            ["id"] = id,
            ["model"] = model,
            ["inputs"] = inputs ?? new { x = new { dtype = "float32", shape = new[] { 1, 2 }, data = new[] { 1.5, 2.5 } } },
            ["timeout_ms"] = timeoutMs,
        }.Where(kv => kv.Value is not null).ToDictionary());

    /// <summary>The next frame, failing after <paramref name="timeout"/>.</summary>
    public async Task<JsonElement> NextAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(15));
        try
        {
            return await _frames.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException("no frame arrived before the deadline.");
        }
        catch (ChannelClosedException)
        {
            throw new InvalidOperationException($"the connection closed ({_socket.CloseStatus}) before a frame arrived.");
        }
    }

    /// <summary>The next <paramref name="count"/> frames.</summary>
    public async Task<List<JsonElement>> NextAsync(int count, TimeSpan? timeout = null)
    {
        var frames = new List<JsonElement>(count);
        var deadline = timeout ?? TimeSpan.FromSeconds(30);
        var started = DateTime.UtcNow;
        while (frames.Count < count)
        {
            var left = deadline - (DateTime.UtcNow - started);
            frames.Add(await NextAsync(left > TimeSpan.Zero ? left : TimeSpan.FromMilliseconds(1)));
        }

        return frames;
    }

    /// <summary>Whether a frame is waiting unread.</summary>
    public bool HasUnread => _frames.Reader.TryPeek(out _);

    public async Task CloseAsync()
    {
        if (_socket.State == WebSocketState.Open)
        {
            await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
        }

        await _receiver.WaitAsync(TimeSpan.FromSeconds(10));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await CloseAsync();
        }
        catch (Exception ex) when (ex is WebSocketException or TimeoutException or ObjectDisposedException)
        {
        }

        _socket.Dispose();
        _sendLock.Dispose();
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[1 << 20];
        try
        {
            while (true)
            {
                var count = 0;
                WebSocketReceiveResult result;
                do
                {
                    result = await _socket.ReceiveAsync(buffer.AsMemory(count).ToArraySegment(), CancellationToken.None);
                    count += result.Count;
                }
                while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    // Answer the server's close, as browsers and client libraries do, completing the handshake.
                    if (_socket.State == WebSocketState.CloseReceived)
                    {
                        await _sendLock.WaitAsync();
                        try
                        {
                            await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                        }
                        finally
                        {
                            _sendLock.Release();
                        }
                    }

                    return;
                }

                using var document = JsonDocument.Parse(buffer.AsMemory(0, count));
                _frames.Writer.TryWrite(document.RootElement.Clone());
            }
        }
        catch (WebSocketException)
        {
        }
        finally
        {
            _frames.Writer.TryComplete();
        }
    }
}

internal static class MemoryExtensions
{
    public static ArraySegment<byte> ToArraySegment(this Memory<byte> memory)
        => System.Runtime.InteropServices.MemoryMarshal.TryGetArray<byte>(memory, out var segment) ? segment : throw new InvalidOperationException();
}
