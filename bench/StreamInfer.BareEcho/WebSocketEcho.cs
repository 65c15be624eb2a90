using System.Buffers;
using System.Buffers.Binary;
using System.Net.WebSockets;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace StreamInfer.BareEcho;

/// <summary>
/// <c>/ws</c>: a text frame is an <c>infer</c> frame, answered with a JSON result; a binary frame is a 4-byte
/// little-endian header length, that many bytes of JSON header (<c>inputs</c> naming each tensor's byte range in the
/// payload), then the payload, answered in the same layout: a result header whose <c>outputs</c> are the inputs, then
/// the same payload bytes.
/// </summary>
internal static class WebSocketEcho
{
    public static async Task HandleAsync(HttpContext context)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            return;
        }

        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var buffer = ArrayPool<byte>.Shared.Rent(1 << 16);
        var output = new ArrayBufferWriter<byte>(1024);
        try
        {
            while (true)
            {
                var count = 0;
                ValueWebSocketReceiveResult received;
                do
                {
                    if (count == buffer.Length)
                    {
                        var larger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                        buffer.AsSpan(0, count).CopyTo(larger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = larger;
                    }

                    received = await socket.ReceiveAsync(buffer.AsMemory(count), context.RequestAborted);
                    count += received.Count;
                }
                while (!received.EndOfMessage);

                if (received.MessageType == WebSocketMessageType.Close)
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                    return;
                }

                if (received.MessageType == WebSocketMessageType.Text)
                {
                    JsonEcho.WriteResult(buffer.AsMemory(0, count), output);
                    await socket.SendAsync(output.WrittenMemory, WebSocketMessageType.Text, endOfMessage: true, context.RequestAborted);
                    continue;
                }

                var headerLength = count >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(buffer) : uint.MaxValue;
                if (headerLength > (uint)(count - 4))
                {
                    await socket.SendAsync("""{"type":"error","code":"bad_request","message":"the header length is past the frame."}"""u8.ToArray(), WebSocketMessageType.Text, endOfMessage: true, context.RequestAborted);
                    continue;
                }

                WriteBinaryHeader(buffer.AsMemory(4, (int)headerLength), output);
                // The header, then the request's payload as it came: two frames of one message, no copy.
                await socket.SendAsync(output.WrittenMemory, WebSocketMessageType.Binary, endOfMessage: false, context.RequestAborted);
                await socket.SendAsync(buffer.AsMemory(4 + (int)headerLength, count - 4 - (int)headerLength), WebSocketMessageType.Binary, endOfMessage: true, context.RequestAborted);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>The length prefix and the result header whose outputs are the request's inputs (same byte ranges).</summary>
    private static void WriteBinaryHeader(ReadOnlyMemory<byte> header, ArrayBufferWriter<byte> output)
    {
        using var document = JsonDocument.Parse(header);
        output.ResetWrittenCount();
        output.GetSpan(4);
        output.Advance(4);
        using (var writer = new Utf8JsonWriter(output))
        {
            JsonEcho.WriteResult(document.RootElement, writer);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(MemoryMarshal.AsMemory(output.WrittenMemory).Span, (uint)(output.WrittenCount - 4));
    }
}
