using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Placement;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Placement;

/// <summary>
/// Sessions and batchers across a TestCluster of three silos, each with its own device: a session uses its own silo's
/// batcher until that queue is deep, then spills to the others; a silo that leaves ends what its batchers held and the
/// others go on serving.
/// </summary>
public sealed class SpillTests : IAsyncLifetime
{
    // "slow": a device that takes a second per batch of two, one batch at a time, so a burst queues up even when a busy
    // machine submits it slowly; a silo spills once more than two batches (four rows) wait. A burst spreads over both
    // other silos because each spill counts against its target until the next load refresh.
    private static readonly IConfiguration Configuration = new ConfigurationBuilder()
        .AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["StreamInfer:Repository:Path"] = TestModels.NewRepository(),
            ["StreamInfer:Repository:BuiltInTinyLm"] = "false",
            ["StreamInfer:Devices:Gpus"] = "none",
            ["StreamInfer:Session:BacklogCapacity"] = "1000",
            ["StreamInfer:Session:Burst"] = "1000",
            ["StreamInfer:Models:slow:MaxBatchSize"] = "2",
            ["StreamInfer:Models:slow:FixedDelay"] = "00:00:01",
            ["StreamInfer:Placement:SpillBatches"] = "2",
            ["StreamInfer:Placement:LoadRefreshInterval"] = "00:00:00.050",
        })
        .Build();

    private TestCluster _cluster = null!;

    public async Task InitializeAsync()
    {
        var builder = new TestClusterBuilder(3);
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        _cluster = builder.Build();
        await _cluster.DeployAsync();
        foreach (var silo in _cluster.Silos)
        {
            // Every silo knows the other two's batchers before the test starts.
            var load = _cluster.GetSiloServiceProvider(silo.SiloAddress).GetRequiredService<ClusterLoad>();
            await Eventually.UntilAsync(() => Task.FromResult(load.KnownElsewhere("slow")), n => n == 2, TimeSpan.FromSeconds(30), "the silos see each other's batchers");
        }
    }

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Submit_LocalQueueDeep_LaterRequestsSpillToTheOtherSilos()
    {
        var probe = await DeliveryProbe.SubscribeAsync(_cluster.Client);
        var session = _cluster.Client.GetGrain<IClientSessionGrain>($"spill-{Guid.NewGuid():N}");

        var placed = new List<string>();
        for (var i = 0; i < 16; i++)
        {
            var admission = await session.SubmitAsync(probe.Request($"r{i}", "slow"));
            Assert.True(admission.Accepted, admission.Error?.Message);
            placed.Add(admission.Silo!);
        }

        var deliveries = await probe.ReceiveAsync(16, TimeSpan.FromSeconds(60));

        // The first requests stay on the session's own silo; once it holds more than two batches, others take the rest.
        var home = placed[0];
        Assert.All(placed.Take(6), s => Assert.Equal(home, s));
        Assert.Equal(2, placed.Where(s => s != home).Distinct().Count());
        Assert.All(deliveries, d => Assert.NotNull(d.Result));
    }

    [Fact]
    public async Task StopSilo_MidLoad_ItsRequestsEndWithErrorsTheOthersServe()
    {
        var probe = await DeliveryProbe.SubscribeAsync(_cluster.Client);
        var session = _cluster.Client.GetGrain<IClientSessionGrain>($"stop-{Guid.NewGuid():N}");
        var placed = new Dictionary<string, string>();
        for (var i = 0; i < 24; i++)
        {
            var admission = await session.SubmitAsync(probe.Request($"r{i}", "slow"));
            Assert.True(admission.Accepted, admission.Error?.Message);
            placed[$"r{i}"] = admission.Silo!;
        }

        // Stop a silo that holds queued requests and is neither the primary nor the home of the session's first request.
        var victimName = placed.Values.Where(s => s != placed["r0"]).Distinct().Order(StringComparer.Ordinal).First();
        var victim = _cluster.Silos.Single(s => SiloNames.ForKey(_cluster.GetSiloServiceProvider(s.SiloAddress).GetRequiredService<ILocalSiloDetails>().Name) == victimName);
        if (victim == _cluster.Primary)
        {
            victimName = placed.Values.Where(s => s != placed["r0"] && s != victimName).Distinct().Single();
            victim = _cluster.Silos.Single(s => SiloNames.ForKey(_cluster.GetSiloServiceProvider(s.SiloAddress).GetRequiredService<ILocalSiloDetails>().Name) == victimName);
        }

        await _cluster.StopSiloAsync(victim);

        var ends = (await probe.ReceiveAsync(24, TimeSpan.FromSeconds(60))).ToDictionary(d => d.RequestId);
        Assert.All(ends, e =>
        {
            if (placed[e.Key] == victimName && e.Value.Error is { } error)
            {
                Assert.Equal(ErrorCode.ModelUnavailable, error.Code);
            }
            else
            {
                Assert.True(e.Value.Result is not null, $"{e.Key} on {placed[e.Key]}: {e.Value.Error?.Message}");
            }
        });
        Assert.Contains(ends, e => placed[e.Key] == victimName && e.Value.Error is not null);

        // New requests go to the two silos left, and are served.
        var after = new List<string>();
        for (var i = 0; i < 8; i++)
        {
            var admission = await session.SubmitAsync(probe.Request($"a{i}", "slow"));
            Assert.True(admission.Accepted, admission.Error?.Message);
            after.Add(admission.Silo!);
        }

        Assert.DoesNotContain(victimName, after);
        Assert.All(await probe.ReceiveAsync(8, TimeSpan.FromSeconds(60)), d => Assert.NotNull(d.Result));
    }

    private sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder) => siloBuilder.AddStreamInfer(Configuration);
    }
}
