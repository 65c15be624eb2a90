using StreamInfer.Grains.Models;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Orleans.TestingHost;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Placement;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>
/// One in-process TestCluster for the grain tests, with the StreamInfer grains' clock (<see cref="StreamInferClock"/>) on a
/// <see cref="FakeTimeProvider"/>: the batcher's wake-up timer and every time the session and batcher grains measure follow
/// <see cref="Time"/>, while Orleans' own timers stay on real time. Tests use fresh client ids and their own
/// model names, so they do not see each other's state.
/// </summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public static readonly FakeTimeProvider Time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    /// <summary>Session limits of the test cluster: 100/s with a burst of 20, a backlog of 32.</summary>
    public const double Rate = 100;
    public const double Burst = 20;
    public const int Backlog = 32;

    internal static readonly IConfiguration Configuration = new ConfigurationBuilder()
        .AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["StreamInfer:Repository:Path"] = TestModels.NewRepository(),
            ["StreamInfer:Session:RatePerSecond"] = "100",
            ["StreamInfer:Session:Burst"] = "20",
            ["StreamInfer:Session:BacklogCapacity"] = "32",
            ["StreamInfer:Session:DefaultTimeout"] = "00:10:00",
            ["StreamInfer:Session:MaxTimeout"] = "01:00:00",
            ["StreamInfer:Session:OrphanGrace"] = "01:00:00",
            // Flushes only by size.
            ["StreamInfer:Models:size4:MaxBatchSize"] = "4",
            ["StreamInfer:Models:size4:MaxWait"] = "00:00:10",
            // Flushes by time long before it fills.
            ["StreamInfer:Models:time50:MaxBatchSize"] = "100",
            ["StreamInfer:Models:time50:MaxWait"] = "00:00:00.050",
            // Never flushes within a test: requests stay queued until cancelled or expired.
            ["StreamInfer:Models:hold-backlog:MaxBatchSize"] = "1000",
            ["StreamInfer:Models:hold-backlog:MaxWait"] = "00:00:10",
            ["StreamInfer:Models:hold-cancel:MaxBatchSize"] = "1000",
            ["StreamInfer:Models:hold-cancel:MaxWait"] = "00:00:10",
            ["StreamInfer:Models:hold-deadline:MaxBatchSize"] = "1000",
            ["StreamInfer:Models:hold-deadline:MaxWait"] = "00:00:10",
            ["StreamInfer:Models:hold-rate:MaxBatchSize"] = "1000",
            ["StreamInfer:Models:hold-rate:MaxWait"] = "00:00:10",
            ["StreamInfer:Models:small-queue:MaxBatchSize"] = "1000",
            ["StreamInfer:Models:small-queue:MaxWait"] = "00:00:10",
            ["StreamInfer:Models:small-queue:QueueCapacity"] = "2",
            ["StreamInfer:Models:refund-queue:MaxBatchSize"] = "1000",
            ["StreamInfer:Models:refund-queue:MaxWait"] = "00:00:10",
            ["StreamInfer:Models:refund-queue:QueueCapacity"] = "1",
            // Three priority levels; batches of two, each holding the device for 2 s: room for a busy machine to queue
            // four more requests behind the first batch (the test checks they did before it reads the order).
            ["StreamInfer:Models:prio:MaxBatchSize"] = "2",
            ["StreamInfer:Models:prio:FixedDelay"] = "00:00:02",
            ["StreamInfer:Models:prio:PriorityLevels"] = "3",
            ["StreamInfer:Models:prio:DefaultPriority"] = "1",
            ["StreamInfer:Models:short-deadline:DefaultTimeout"] = "00:00:02",
            ["StreamInfer:Models:typed:Inputs:x:DType"] = "float32",
            ["StreamInfer:Models:typed:Inputs:x:Shape:0"] = "-1",
            ["StreamInfer:Models:typed:Inputs:x:Shape:1"] = "2",
        })
        .Build();

    public TestCluster Cluster { get; private set; } = null!;

    public IClusterClient Client => Cluster.Client;

    /// <summary>A session for a client id no other test uses.</summary>
    public IClientSessionGrain NewSession() => Client.GetGrain<IClientSessionGrain>($"test-{Guid.NewGuid():N}");

    /// <summary>The batcher the test cluster's sessions use for a model.</summary>
    public IBatcherGrain Batcher(string model) => Client.GetGrain<IBatcherGrain>(BatcherKeyFor(model));

    /// <summary>The batcher key the sessions of the test cluster's single silo use for a model.</summary>
    public string BatcherKeyFor(string model)
    {
        var silo = Cluster.Primary!.SiloAddress;
        var name = SiloNames.ForKey(Cluster.GetSiloServiceProvider(silo).GetRequiredService<ILocalSiloDetails>().Name);
        return new BatcherKey(model, name, "cpu0").ToString();
    }

    public async Task InitializeAsync()
    {
        var builder = new TestClusterBuilder(1);
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        Cluster = builder.Build();
        await Cluster.DeployAsync();
        await Cluster.GetSiloServiceProvider(Cluster.Primary!.SiloAddress).GetRequiredService<ModelCatalog>().Loaded.WaitAsync(TimeSpan.FromSeconds(60));
    }

    public async Task DisposeAsync() => await Cluster.DisposeAsync();

    /// <summary>Moves the grain clock on; due grain timers fire (their ticks run on the grains afterwards).</summary>
    public static Task AdvanceAsync(TimeSpan by) => Task.Run(() => Time.Advance(by)).WaitAsync(TimeSpan.FromSeconds(30));

    private sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
        {
            siloBuilder.AddStreamInfer(Configuration);
            siloBuilder.Services.AddKeyedSingleton<TimeProvider>(StreamInferClock.Key, Time);
        }
    }
}

[CollectionDefinition(Name)]
public sealed class ClusterCollection : ICollectionFixture<ClusterFixture>
{
    public const string Name = "cluster";
}
