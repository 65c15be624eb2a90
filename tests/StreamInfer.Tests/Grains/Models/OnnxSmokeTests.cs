using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models;

public sealed class OnnxSmokeTests
{
    [Fact]
    public async Task Load_GeneratedRepository_ModelsReady()
    {
        var root = TestModels.NewRepository();
        using var devices = new DeviceRegistry(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
        using var catalog = new ModelCatalog(Options.Create(new ModelsOptions()), Options.Create(new ModelRepositoryOptions { Path = root }), devices, NullLogger<ModelCatalog>.Instance);
        await catalog.LoadAsync(CancellationToken.None);
        var status = catalog.Status;
        Assert.Empty(status.Errors);
        Assert.True(catalog.TryGet("seq", out var seq));
        Assert.Equal(ModelState.Ready, seq.State);
        Assert.True(catalog.TryGet("multi", out var multi));
        Assert.Equal(ModelState.Ready, multi.State);
    }
}
