using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using StreamInfer.Grains.Placement;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>
/// A grid of its own whose connections may hold four of its largest binary frames (16 KiB each, 64 KiB in all), and
/// whose <c>hold</c> model gathers up to 100 requests for a second before running them.
/// </summary>
public sealed class InFlightBytesGrid : IAsyncLifetime
{
    public const int MaxBinaryBytes = 16 * 1024;
    public const int MaxInFlightBytes = 4 * MaxBinaryBytes;

    public WebApplication App { get; private set; } = null!;

    public Uri WsUri { get; private set; } = null!;

    public IBatcherGrain Batcher(string model)
    {
        var silo = SiloNames.ForKey(App.Services.GetRequiredService<ILocalSiloDetails>().Name);
        return App.Services.GetRequiredService<IClusterClient>().GetGrain<IBatcherGrain>(new BatcherKey(model, silo, "cpu0").ToString());
    }

    public async Task InitializeAsync()
    {
        (App, var uri) = await FrontendFixture.StartGridAsync(FrontendFixture.IsolatedSettings(
            extra:
            [
                ("StreamInfer:Frontend:MaxFrameBytes", "2048"),
                ("StreamInfer:Frontend:MaxBinaryBytes", MaxBinaryBytes.ToString(CultureInfo.InvariantCulture)),
                ("StreamInfer:Frontend:MaxInFlightBytes", MaxInFlightBytes.ToString(CultureInfo.InvariantCulture)),
                ("StreamInfer:Models:hold:MaxBatchSize", "100"),
                ("StreamInfer:Models:hold:MaxWait", "00:00:01"),
            ]));
        WsUri = new UriBuilder(uri) { Scheme = "ws", Path = "/ws" }.Uri;
    }

    public async Task DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

/// <summary>The request bytes one connection holds stay within <c>Frontend:MaxInFlightBytes</c>.</summary>
public sealed class InFlightBytesTests(InFlightBytesGrid grid) : IClassFixture<InFlightBytesGrid>
{
    [Fact]
    public async Task BinaryRequests_MoreThanTheBudgetHolds_AdmittedOnlyAsEarlierOnesEndThenAllAnswered()
    {
        const int frameBytes = 16_000;
        const int fit = InFlightBytesGrid.MaxInFlightBytes / frameBytes;
        const int requests = 3 * fit;
        Assert.Equal(4, fit);
        await using var client = await BinaryWsClient.ConnectAsync(grid.WsUri);

        // Sent apart from the reading below: once the budget is spent the server reads no more, so a send may wait.
        var sending = Task.Run(async () =>
        {
            for (var i = 0; i < requests; i++)
            {
                await client.SendBinaryAsync(BinaryFrameBadInputTests.EchoOfSize(frameBytes, $"r{i}", "hold"));
            }
        });

        // The budget fills while the model holds its batch; the rest of the frames wait unread.
        await Eventually.UntilAsync(() => grid.Batcher("hold").GetStatusAsync(), s => s.Queued == fit, what: $"{fit} requests queued");

        // Every batch the model ran had only what the budget let in, and every request was answered.
        var ids = new HashSet<string>();
        for (var i = 0; i < requests; i++)
        {
            var header = (await client.NextAsync()).Header;
            ids.Add(header.GetProperty("id").GetString()!);
            Assert.InRange(header.GetProperty("timing").GetProperty("batch_size").GetInt32(), 1, fit);
        }

        await sending;
        Assert.Equal(requests, ids.Count);
        var status = await Eventually.UntilAsync(() => grid.Batcher("hold").GetStatusAsync(), s => s.ItemsRun == requests, what: "every request ran");
        Assert.All(status.RecentBatchSizes, size => Assert.InRange(size, 1, fit));
    }
}
