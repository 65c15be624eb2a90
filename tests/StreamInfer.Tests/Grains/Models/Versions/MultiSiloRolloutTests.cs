using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Models;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models.Versions;

/// <summary>
/// Rollouts across a TestCluster of two silos, each with its own catalog and device: the commit reaches both, and a
/// silo that joins afterwards serves the committed version rather than its repository scan's.
/// </summary>
public sealed class MultiSiloRolloutTests : IAsyncLifetime
{
    private static readonly IConfiguration Configuration = new ConfigurationBuilder()
        .AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["StreamInfer:Repository:Path"] = NewRepository(),
            ["StreamInfer:Repository:BuiltInTinyLm"] = "false",
            ["StreamInfer:Devices:Gpus"] = "none",
        })
        .Build();

    private TestCluster _cluster = null!;

    public async Task InitializeAsync()
    {
        var builder = new TestClusterBuilder(2);
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        _cluster = builder.Build();
        await _cluster.DeployAsync();
        foreach (var silo in _cluster.Silos)
        {
            await Catalog(silo).Loaded.WaitAsync(TimeSpan.FromSeconds(60));
        }
    }

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Rollout_TwoSilos_BothServeTheNewVersionAndALateJoinerToo()
    {
        var rollout = await _cluster.Client.GetGrain<IModelVersionGrain>("scale").RolloutAsync("2");
        var status = await _cluster.Client.GetGrain<IModelVersionGrain>("scale").GetStatusAsync();

        Assert.True(rollout.Phase == RolloutPhases.Committed, string.Join("; ", rollout.Failures));
        Assert.Empty(rollout.Failures);
        Assert.Equal(2, status.Silos.Length);
        Assert.All(status.Silos, s => Assert.Equal("2", s.ServingVersion));

        var late = await _cluster.StartAdditionalSiloAsync();
        await Catalog(late).Loaded.WaitAsync(TimeSpan.FromSeconds(60));
        var served = await Eventually.UntilAsync(
            () => Task.FromResult(Catalog(late).TryGet("scale", out var entry) ? entry.Version : null),
            v => v == "2",
            TimeSpan.FromSeconds(60),
            "the late silo serves the committed version");

        Assert.Equal("2", served);
    }

    [Fact]
    public async Task Rollout_CorruptVersion_AbortedOnBothSilosNothingLeftPrepared()
    {
        var rollout = await _cluster.Client.GetGrain<IModelVersionGrain>("scale").RolloutAsync("3");
        var status = await _cluster.Client.GetGrain<IModelVersionGrain>("scale").GetStatusAsync();

        Assert.Equal(RolloutPhases.Aborted, rollout.Phase);
        Assert.Equal(2, rollout.Failures.Select(f => f.Silo).Distinct().Count());
        Assert.All(status.Silos, s => Assert.Equal("1", s.ServingVersion));
        Assert.All(status.Silos, s => Assert.Empty(s.PreparedVersions));
    }

    private ModelCatalog Catalog(SiloHandle silo) => _cluster.GetSiloServiceProvider(silo.SiloAddress).GetRequiredService<ModelCatalog>();

    private static string NewRepository()
    {
        var root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        TestModels.WriteScale(root, "scale", "1", 1f);
        TestModels.WriteScale(root, "scale", "2", 2f);
        Directory.CreateDirectory(Path.Combine(root, "scale", "3"));
        File.WriteAllText(Path.Combine(root, "scale", "3", "model.onnx"), "not a model");
        return root;
    }

    private sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder) => siloBuilder.AddStreamInfer(Configuration);
    }
}
