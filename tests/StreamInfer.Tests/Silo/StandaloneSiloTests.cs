using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using StreamInfer.Silo;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Silo;

/// <summary>The standalone silo serves the grains, and delivers to an external Orleans client's observer.</summary>
public sealed class StandaloneSiloTests
{
    [Fact]
    public async Task Silo_LocalhostClustering_ServesSessionAndDeliversToExternalClient()
    {
        var siloPort = Ports.Free();
        var gatewayPort = Ports.Free();
        var clusterId = $"test-{Guid.NewGuid():N}";
        using var silo = SiloHost.Build([], b => b.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Logging:LogLevel:Default"] = "Warning",
            ["StreamInfer:Orleans:SiloPort"] = siloPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["StreamInfer:Orleans:GatewayPort"] = gatewayPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["StreamInfer:Orleans:ClusterId"] = clusterId,
        }));
        await silo.StartAsync();
        try
        {
            var clientBuilder = Host.CreateApplicationBuilder();
            clientBuilder.Logging.SetMinimumLevel(LogLevel.Warning);
            clientBuilder.UseOrleansClient(c => c
                .UseLocalhostClustering(gatewayPort, "streaminfer", clusterId));
            using var client = clientBuilder.Build();
            await client.StartAsync();
            var cluster = client.Services.GetRequiredService<IClusterClient>();
            var probe = await DeliveryProbe.SubscribeAsync(cluster);
            var session = cluster.GetGrain<IClientSessionGrain>($"ext-{Guid.NewGuid():N}");

            var admission = await session.SubmitAsync(probe.Request("s1", value: 3));

            Assert.True(admission.Accepted);
            var delivery = Assert.Single(await probe.ReceiveAsync(1));
            Assert.Equal("s1", delivery.RequestId);
            Assert.Equal("echo", delivery.Result?.Model);
            await client.StopAsync();
        }
        finally
        {
            await silo.StopAsync();
        }
    }

}
