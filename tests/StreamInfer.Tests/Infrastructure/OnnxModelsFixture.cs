using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Grains.Models;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>
/// The generated test models loaded once, on the CPU, outside any cluster: for tests of the engine itself (batch
/// assembly, padding, validation), which call the models directly.
/// </summary>
public sealed class OnnxModelsFixture : IAsyncLifetime, IDisposable
{
    private DeviceRegistry? _devices;
    private ModelStack? _models;

    public ModelCatalog Catalog { get; private set; } = null!;

    /// <summary>The repository folder the models were loaded from.</summary>
    public string Repository { get; private set; } = null!;

    public IBatchModel Model(string name)
    {
        Assert.True(Catalog.TryGet(name, out var entry), $"model {name} is in the catalog");
        Assert.Equal(ModelState.Ready, entry.State);
        return Assert.IsAssignableFrom<IBatchModel>(entry.Any);
    }

    /// <summary>The loaded decoder <paramref name="name"/> (e.g. tiny-lm).</summary>
    public OnnxDecoderModel Decoder(string name)
    {
        Assert.True(Catalog.TryGet(name, out var entry), $"model {name} is in the catalog");
        Assert.Equal(ModelState.Ready, entry.State);
        return Assert.IsType<OnnxDecoderModel>(entry.Any);
    }

    public async Task InitializeAsync()
    {
        _devices = new DeviceRegistry(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
        Repository = TestModels.NewRepository();
        _models = new ModelStack(Repository, _devices);
        Catalog = _models.Catalog;
        await _models.StartAsync();
    }

    public Task DisposeAsync() => Task.CompletedTask;

    public void Dispose()
    {
        _models?.Dispose();
        _devices?.Dispose();
    }
}
