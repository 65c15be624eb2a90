using System.Net.Sockets;
using System.Net.WebSockets;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>The send queue's byte budget: large results a client does not read drop it long before the frame budget.</summary>
[Collection(FrontendCollection.Name)]
public sealed class SendQueueBytesTests(FrontendFixture fixture)
{
    [Fact]
    public async Task SlowReader_LargeResults_DroppedByByteBudgetLongBeforeFrameBudget()
    {
        var before = fixture.ConnectedClients.ToHashSet();
        // A small receive buffer of the reader's own (no autotuning): what the kernels hold for it stays a few MB.
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (context, cancellationToken) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveBufferSize = 64 * 1024 };
                try
                {
                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        using var invoker = new HttpMessageInvoker(handler);
        using var reader = new ClientWebSocket();
        await reader.ConnectAsync(fixture.WsUri, invoker, CancellationToken.None);
        var sessionId = await fixture.NewClientIdAsync(before);

        // Never read. Each request's echo is a result of its own size; with at most half the frame budget of them, only
        // the byte budget can fill.
        var payload = new byte[Math.Min(256 * 1024, FrontendFixture.MaxBinaryBytes / 2)];
        var limit = FrontendFixture.SendQueueCapacity / 2;
        var sent = 0;
        for (; sent < limit && fixture.ConnectedClients.Contains(sessionId); sent++)
        {
            var message = BinaryFrames.Build(
                new { type = "infer", id = $"big{sent}", model = "echo-bulk", inputs = new { x = new { dtype = "uint8", shape = new[] { 1, payload.Length }, bytes = new[] { 0, payload.Length } } } },
                payload);
            try
            {
                await reader.SendAsync(message, WebSocketMessageType.Binary, endOfMessage: true, CancellationToken.None);
            }
            catch (Exception ex) when (ex is WebSocketException or IOException)
            {
                break;
            }
        }

        await Eventually.UntilAsync(
            () => Task.FromResult(fixture.ConnectedClients.Contains(sessionId)),
            connected => !connected,
            what: $"the server drops the client whose {sent} unread results pass the byte budget");
        Assert.True(FrontendFixture.SendQueueBytes < limit * (long)payload.Length);

        await using var other = await WsTestClient.ConnectAsync(fixture.WsUri);
        await WebSocketBadInputTests.AssertStillServesAsync(other);
    }
}
