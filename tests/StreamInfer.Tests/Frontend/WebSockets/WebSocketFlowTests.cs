using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

[Collection(FrontendCollection.Name)]
public sealed class WebSocketFlowTests(FrontendFixture fixture)
{
    [Fact]
    public async Task ManyClients_ConcurrentRequests_EachEndsExactlyOnceWithItsOwnAnswer()
    {
        const int clients = 100;
        const int perClient = 50;
        var failures = new ConcurrentQueue<string>();

        async Task RunClientAsync(int c)
        {
            await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);
            var sends = Enumerable.Range(0, perClient).Select(i => client.SendInferAsync(
                $"c{c}-r{i}",
                inputs: new { x = new { dtype = "float32", shape = new[] { 1, 2 }, data = new[] { c, i } } }));
            await Task.WhenAll(sends);

            var frames = await client.NextAsync(perClient, TimeSpan.FromSeconds(90));
            var seen = new HashSet<string>();
            foreach (var frame in frames)
            {
                var id = frame.GetProperty("id").GetString()!;
                if (frame.GetProperty("type").GetString() != "result")
                {
                    failures.Enqueue($"{frame.GetProperty("code")}: {frame.GetProperty("message")}");
                    continue;
                }

                if (!seen.Add(id))
                {
                    failures.Enqueue($"{id} answered twice");
                }

                // The echo carries the client's own numbers back: an answer meant for another client would not match.
                var data = frame.GetProperty("outputs").GetProperty("x").GetProperty("data").EnumerateArray().Select(e => (int)e.GetDouble()).ToArray();
                if (id != $"c{data[0]}-r{data[1]}" || data[0] != c)
                {
                    failures.Enqueue($"client {c} got {id} with data [{string.Join(',', data)}]");
                }
            }

            if (client.HasUnread)
            {
                failures.Enqueue($"client {c} got more than {perClient} frames");
            }
        }

        await Task.WhenAll(Enumerable.Range(0, clients).Select(RunClientAsync));

        Assert.Empty(failures);
    }

    [Fact]
    public async Task Cancel_QueuedRequest_CancelledFrameAndBacklogReleased()
    {
        var before = fixture.ConnectedClients.ToHashSet();
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);
        await client.SendInferAsync("k0", "hold");
        await client.SendInferAsync("k1", "hold");
        await client.SendInferAsync("k2", "hold");
        var sessionId = await fixture.NewClientIdAsync(before);
        var session = fixture.Client.GetGrain<IClientSessionGrain>(sessionId);
        await Eventually.UntilAsync(() => session.GetStatusAsync(), s => s.Backlog == 3, what: "three requests admitted");

        await client.SendAsync(new { type = "cancel", id = "k1" });

        WebSocketBadInputTests.AssertError(await client.NextAsync(), "cancelled", "k1");
        await Eventually.UntilAsync(() => session.GetStatusAsync(), s => s.Backlog == 2, what: "the cancelled request's slot is released");

        // Cancelling it again: it is no longer in flight.
        await client.SendAsync(new { type = "cancel", id = "k1" });
        WebSocketBadInputTests.AssertError(await client.NextAsync(), "bad_request", "k1");
    }

    [Fact]
    public async Task Disconnect_WithRequestsQueued_CancelsThemAndReleasesBacklog()
    {
        var before = fixture.ConnectedClients.ToHashSet();
        var queuedBefore = (await fixture.Batcher("hold").GetStatusAsync()).Queued;
        var client = await WsTestClient.ConnectAsync(fixture.WsUri);
        for (var i = 0; i < 5; i++)
        {
            await client.SendInferAsync($"d{i}", "hold");
        }

        var sessionId = await fixture.NewClientIdAsync(before);
        var session = fixture.Client.GetGrain<IClientSessionGrain>(sessionId);
        await Eventually.UntilAsync(() => session.GetStatusAsync(), s => s.Backlog == 5, what: "five requests admitted");

        await client.DisposeAsync();

        await Eventually.UntilAsync(() => fixture.Batcher("hold").GetStatusAsync(), s => s.Queued == queuedBefore, what: "the batcher drops the client's requests");
        await Eventually.UntilAsync(() => session.GetStatusAsync(), s => s.Backlog == 0, what: "the backlog is released");
        Assert.DoesNotContain(sessionId, fixture.ConnectedClients);
    }

    [Fact]
    public async Task Deadline_PassesWhileQueuedBehindBusyDevice_DeadlineExceeded()
    {
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);
        // "slow" runs one request at a time for 500 ms: the second waits in the queue past its 100 ms deadline.
        await client.SendInferAsync("first", "slow");
        await Eventually.UntilAsync(() => fixture.Batcher("slow").GetStatusAsync(), s => s.Running == 1, what: "the first request occupies the device");
        await client.SendInferAsync("second", "slow", timeoutMs: 100);

        var firstFrame = await client.NextAsync();
        WebSocketBadInputTests.AssertError(firstFrame, "deadline_exceeded", "second");
        var result = await client.NextAsync();
        Assert.Equal("result", result.GetProperty("type").GetString());
        Assert.Equal("first", result.GetProperty("id").GetString());
    }

    [Fact]
    public async Task Backlog_CrossesEightyPercent_SlowConsumerWarningOnceThenBacklogFull()
    {
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);
        for (var i = 0; i <= FrontendFixture.Backlog; i++)
        {
            await client.SendInferAsync($"w{i}", "hold");
        }

        var frames = await client.NextAsync(2);
        var warning = Assert.Single(frames, f => f.GetProperty("type").GetString() == "warning");
        Assert.Equal("slow_consumer", warning.GetProperty("code").GetString());
        Assert.Equal(80, warning.GetProperty("backlog").GetInt32());
        Assert.Equal(FrontendFixture.Backlog, warning.GetProperty("capacity").GetInt32());
        // Admissions of one client run concurrently, so which request finds the backlog full is not fixed; exactly one does.
        var full = Assert.Single(frames, f => f.GetProperty("type").GetString() == "error");
        Assert.Equal("backlog_full", full.GetProperty("code").GetString());
        Assert.StartsWith("w", full.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.False(client.HasUnread);
    }

    [Fact]
    public async Task SlowReader_SendQueueOverflows_DroppedWhileOthersKeepBeingServed()
    {
        var before = fixture.ConnectedClients.ToHashSet();
        using var reader = new ClientWebSocket();
        await reader.ConnectAsync(fixture.WsUri, CancellationToken.None);
        var sessionId = await fixture.NewClientIdAsync(before);

        // Never read. Each frame earns an error frame of about its own size; past the socket buffers (a few MB on
        // loopback) the server's send queue fills and the server must drop us rather than buffer without bound.
        var frame = Encoding.UTF8.GetBytes($"{{\"type\":\"{new string('z', 4000)}\",\"id\":\"slow\"}}");
        for (var i = 0; i < 20_000 && fixture.ConnectedClients.Contains(sessionId); i++)
        {
            try
            {
                await reader.SendAsync(frame, WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
            }
            catch (Exception ex) when (ex is WebSocketException or IOException)
            {
                break;
            }
        }

        await Eventually.UntilAsync(
            () => Task.FromResult(fixture.ConnectedClients.Contains(sessionId)),
            connected => !connected,
            what: "the server drops the client that does not read");

        await using var other = await WsTestClient.ConnectAsync(fixture.WsUri);
        await WebSocketBadInputTests.AssertStillServesAsync(other);
    }
}
