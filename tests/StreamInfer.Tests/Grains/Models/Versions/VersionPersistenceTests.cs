using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.TestingHost;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Models;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models.Versions;

/// <summary>
/// A cluster's model versions live in Redis (StreamInfer:Orleans:Redis): a committed rollout survives the silo that held
/// the model's version grain. Three silos on Redis membership (so that any of them may go) and a real redis-server:
/// Slow, as it starts that process; CI runs it.
/// </summary>
[Trait("Category", "Slow")]
public sealed class VersionPersistenceTests : IAsyncLifetime
{
    private static readonly string Repository = NewRepository();
    private RedisServer _redis = null!;
    private TestCluster _cluster = null!;

    public async Task InitializeAsync()
    {
        _redis = await RedisServer.StartAsync();
        var builder = new TestClusterBuilder(3);
        builder.Options.UseTestClusterMembership = false;
        builder.Properties["Redis"] = _redis.ConnectionString;
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        builder.AddClientBuilderConfigurator<ClientConfigurator>();
        _cluster = builder.Build();
        await _cluster.DeployAsync();
        foreach (var silo in _cluster.Silos)
        {
            await Catalog(silo).Loaded.WaitAsync(TimeSpan.FromSeconds(60));
        }
    }

    public async Task DisposeAsync()
    {
        await _cluster.DisposeAsync();
        await _redis.DisposeAsync();
    }

    [Fact]
    public async Task Rollout_SiloHoldingTheVersionGrainRestarts_CommittedVersionSurvives()
    {
        var versions = _cluster.Client.GetGrain<IModelVersionGrain>("scale");
        var rollout = await versions.RolloutAsync("2");
        Assert.Equal(RolloutPhases.Committed, rollout.Phase);

        var holder = await _cluster.Client.GetGrain<IManagementGrain>(0).GetActivationAddress(versions);
        var silo = _cluster.Silos.Single(s => s.SiloAddress.Equals(holder));
        await _cluster.StopSiloAsync(silo);
        var restarted = await _cluster.StartAdditionalSiloAsync();
        await Catalog(restarted).Loaded.WaitAsync(TimeSpan.FromSeconds(60));

        // The grain comes back elsewhere, from Redis: the committed version, its history, and the silos serving it.
        var moved = await _cluster.Client.GetGrain<IManagementGrain>(0).GetActivationAddress(versions);
        var status = await versions.GetStatusAsync();
        Assert.NotEqual(holder, moved);
        Assert.Equal("2", status.ServingVersion);
        Assert.Equal("1", status.PreviousVersion);
        Assert.Contains(status.History, h => h.To == "2" && h.Phase == RolloutPhases.Committed);
        await Eventually.UntilAsync(
            () => Task.FromResult(Catalog(restarted).TryGet("scale", out var entry) ? entry.Version : null),
            v => v == "2",
            TimeSpan.FromSeconds(60),
            "the restarted silo serves the committed version");
    }

    private ModelCatalog Catalog(SiloHandle silo) => _cluster.GetSiloServiceProvider(silo.SiloAddress).GetRequiredService<ModelCatalog>();

    private static string NewRepository()
    {
        var root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        TestModels.WriteScale(root, "scale", "1", 1f);
        TestModels.WriteScale(root, "scale", "2", 2f);
        return root;
    }

    private sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
        {
            var redis = siloBuilder.Configuration["Redis"]!;
            var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["StreamInfer:Repository:Path"] = Repository,
                ["StreamInfer:Repository:BuiltInTinyLm"] = "false",
                ["StreamInfer:Devices:Gpus"] = "none",
                ["StreamInfer:Orleans:Redis"] = redis,
            }).Build();
            siloBuilder.UseRedisClustering(redis).AddStreamInfer(configuration);
        }
    }

    private sealed class ClientConfigurator : IClientBuilderConfigurator
    {
        public void Configure(IConfiguration configuration, IClientBuilder clientBuilder)
            => clientBuilder.UseRedisClustering(configuration["Redis"]!);
    }
}
