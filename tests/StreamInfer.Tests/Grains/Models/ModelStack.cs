using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;

namespace StreamInfer.Tests.Grains.Models;

/// <summary>The catalog and the steps that fill it, wired by hand as a silo's start-up wires them, outside any cluster.</summary>
public sealed class ModelStack : IDisposable
{
    private readonly IOptions<ModelRepositoryOptions> _repository;

    public ModelStack(string repository, DeviceRegistry devices, bool builtInTinyLm = true, bool builtInVadLite = false, long kvCacheBudgetMb = 0)
    {
        _repository = Options.Create(new ModelRepositoryOptions { Path = repository, BuiltInTinyLm = builtInTinyLm, BuiltInVadLite = builtInVadLite });
        Catalog = new ModelCatalog(Options.Create(new ModelsOptions()), devices);
        KvCache = new KvCacheBudget(Options.Create(new DeviceOptions { KvCacheBudgetMb = kvCacheBudgetMb }), devices);
        var loader = new ModelLoader(devices, KvCache, NullLogger<ModelLoader>.Instance);
        Rollout = new ModelRollout(Catalog, loader, _repository, NullLogger<ModelRollout>.Instance);
        Repository = new RepositorySync(Catalog, loader, Rollout, _repository, NullLogger<RepositorySync>.Instance);
    }

    public ModelCatalog Catalog { get; }

    public KvCacheBudget KvCache { get; }

    public ModelRollout Rollout { get; }

    public RepositorySync Repository { get; }

    /// <summary>The start-up's first half: the built-in models written (tiny-lm unless turned off, vad-lite only when asked), every repository model registered.</summary>
    public IReadOnlyList<StreamInfer.Grains.Models.Repository.ModelDefinition> Register()
    {
        new BuiltInModels(_repository, NullLogger<BuiltInModels>.Instance).EnsureWritten();
        return Repository.Register();
    }

    /// <summary>The whole start-up: register, then load every model.</summary>
    public Task StartAsync() => Repository.LoadAsync(Register(), CancellationToken.None);

    public void Dispose() => Catalog.Dispose();
}
