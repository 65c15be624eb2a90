using Microsoft.Extensions.DependencyInjection;

namespace StreamInfer.Grains.Models.Versions;

/// <summary>Wiring of the model catalog and its start-up into a silo.</summary>
public static class ModelServiceCollectionExtensions
{
    /// <summary>
    /// Adds the catalog and the steps that fill it (built-in models, repository sync, loader, rollout), the silo step that runs
    /// them at start-up, and the optional repository watch. Options and devices are registered by the caller.
    /// </summary>
    public static IServiceCollection AddModelCatalog(this IServiceCollection services)
    {
        services.AddSingleton<ModelCatalog>();
        services.AddSingleton<KvCacheBudget>();
        services.AddSingleton<ModelLoader>();
        services.AddSingleton<ModelRollout>();
        services.AddSingleton<RepositorySync>();
        services.AddSingleton<BuiltInModels>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, ModelStartup>();
        services.AddHostedService<RepositoryWatch>();
        return services;
    }
}
