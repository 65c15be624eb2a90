using System.Net.WebSockets;
using System.Text.Json;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.WebSockets;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>The send queue's two budgets: whichever fills first warns at 80% (saying which) and refuses past 100%.</summary>
public sealed class FrameOutboxTests
{
    private const int KiB = 1024;

    [Fact]
    public async Task Send_BytesFillFirst_WarnsOnceNamingBytesThenRefusesPastBudget()
    {
        var full = new List<string>();
        var outbox = new FrameOutbox(capacity: 100, byteBudget: 64 * KiB, full.Add);

        for (var i = 0; i < 6; i++)
        {
            outbox.Send(new byte[10 * KiB]);
        }

        Assert.Empty(full);
        outbox.Send(new byte[10 * KiB]);

        Assert.Equal(["65536 bytes"], full);
        var queued = await DrainAsync(outbox);
        Assert.Equal(6, queued.Count(m => m.Frame.Length == 10 * KiB));
        var warning = Assert.Single(Warnings(queued));
        Assert.Equal("slow_consumer", warning.GetProperty("code").GetString());
        Assert.Equal("bytes", warning.GetProperty("unit").GetString());
        Assert.Equal(60 * KiB, warning.GetProperty("backlog").GetInt64());
        Assert.Equal(64 * KiB, warning.GetProperty("capacity").GetInt64());
    }

    [Fact]
    public async Task Send_FramesFillFirst_WarnsOnceNamingFramesThenRefusesPastCapacity()
    {
        var full = new List<string>();
        var outbox = new FrameOutbox(capacity: 16, byteBudget: 1 << 20, full.Add);

        for (var i = 0; i < 20; i++)
        {
            outbox.Send(new byte[100]);
        }

        Assert.NotEmpty(full);
        Assert.All(full, f => Assert.Equal("16 frames", f));
        var warning = Assert.Single(Warnings(await DrainAsync(outbox)));
        Assert.Equal("frames", warning.GetProperty("unit").GetString());
        Assert.Equal(13, warning.GetProperty("backlog").GetInt32());
        Assert.Equal(16, warning.GetProperty("capacity").GetInt32());
    }

    [Fact]
    public async Task Send_MessageLargerThanBudgetWhileNothingWaits_QueuedAndItsBytesFreedOnceSent()
    {
        var full = new List<string>();
        var outbox = new FrameOutbox(capacity: 16, byteBudget: 64 * KiB, full.Add);
        var large = new RentedBytes(100 * KiB);
        large.Advance(100 * KiB);

        outbox.SendBinary(large);
        outbox.Send(new byte[1]);

        Assert.Equal(["65536 bytes"], full);
        await using var reader = outbox.ReadAllAsync(CancellationToken.None).GetAsyncEnumerator();
        Assert.True(await reader.MoveNextAsync());
        Assert.Equal(WebSocketMessageType.Binary, reader.Current.Type);
        outbox.Sent(reader.Current);
        Assert.Throws<ObjectDisposedException>(() => large.Memory);
        Assert.True(outbox.QueuedBytes < 64 * KiB, $"{outbox.QueuedBytes} bytes still counted");
        outbox.Send(new byte[1]);
        Assert.Single(full);
    }

    [Fact]
    public void SendBinary_Refused_BufferReturnedAtOnce()
    {
        var outbox = new FrameOutbox(capacity: 16, byteBudget: 64 * KiB, _ => { });
        outbox.Send(new byte[60 * KiB]);
        var refused = new RentedBytes(10 * KiB);
        refused.Advance(10 * KiB);

        outbox.SendBinary(refused);

        Assert.Throws<ObjectDisposedException>(() => refused.Memory);
    }

    private static async Task<List<Outgoing>> DrainAsync(FrameOutbox outbox)
    {
        outbox.Complete();
        var messages = new List<Outgoing>();
        await foreach (var message in outbox.ReadAllAsync(CancellationToken.None))
        {
            messages.Add(message);
        }

        return messages;
    }

    private static IEnumerable<JsonElement> Warnings(IEnumerable<Outgoing> messages)
        => messages.Where(m => m.Frame.Length > 0 && m.Frame.Span[0] == (byte)'{')
            .Select(m => JsonDocument.Parse(m.Frame).RootElement.Clone())
            .Where(f => f.GetProperty("type").GetString() == "warning");
}
