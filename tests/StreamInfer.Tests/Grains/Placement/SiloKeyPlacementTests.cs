using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Placement;

namespace StreamInfer.Tests.Grains.Placement;

public sealed class SiloKeyPlacementTests
{
    [Fact]
    public async Task Batcher_KeyNamesASilo_ActivatesOnThatSilo()
    {
        var builder = new TestClusterBuilder(3);
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        await using var cluster = builder.Build();
        await cluster.DeployAsync();

        var names = cluster.Silos
            .Select(s => SiloNames.ForKey(cluster.GetSiloServiceProvider(s.SiloAddress).GetRequiredService<ILocalSiloDetails>().Name))
            .ToList();
        Assert.Equal(3, names.Distinct().Count());

        // Twice round, so that later activations cannot all land on one silo by chance.
        foreach (var model in new[] { "echo", "other" })
        {
            foreach (var name in names)
            {
                var status = await cluster.Client.GetGrain<IBatcherGrain>(new BatcherKey(model, name, "cpu0").ToString()).GetStatusAsync();
                Assert.Equal(name, status.Silo);
            }
        }
    }

    private sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
            => siloBuilder.AddStreamInfer(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["StreamInfer:Models:other:MaxBatchSize"] = "8",
            }).Build());
    }
}
