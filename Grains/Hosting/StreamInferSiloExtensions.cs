using StreamInfer.Grains.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Orleans.Dashboard;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models.Versions;
using StreamInfer.Grains.Options;
using StreamInfer.Grains.Placement;
using StreamInfer.Grains.Clocks;
using StreamInfer.Grains.Deliveries;

namespace StreamInfer.Grains.Hosting;

/// <summary>Wiring of the StreamInfer grains into a silo.</summary>
public static class StreamInferSiloExtensions
{
    /// <summary>
    /// Adds the session and batcher grains' services (options, model catalog, device workers, the delivery publisher)
    /// and the grid's clock to a silo.
    /// </summary>
    public static ISiloBuilder AddStreamInfer(this ISiloBuilder silo, IConfiguration configuration)
    {
        var services = silo.Services;
        services.AddOptions<ClientSessionOptions>().Bind(configuration.GetSection(ClientSessionOptions.Section)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<ClientSessionOptions>, ClientSessionOptionsValidator>();
        services.AddOptions<ModelsOptions>()
            .Configure(o => configuration.GetSection(ModelsOptions.Section).Bind(o.Models))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<ModelsOptions>, ModelsOptionsValidator>();
        services.AddOptions<ModelRepositoryOptions>().Bind(configuration.GetSection(ModelRepositoryOptions.Section)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<ModelRepositoryOptions>, ModelRepositoryOptionsValidator>();
        services.AddOptions<DeviceOptions>().Bind(configuration.GetSection(DeviceOptions.Section)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<DeviceOptions>, DeviceOptionsValidator>();
        services.AddModelCatalog();
        services.AddPlacementDirector<SiloKeyPlacement, SiloKeyPlacementDirector>();
        services.AddOptions<PlacementOptions>().Bind(configuration.GetSection(PlacementOptions.Section)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<PlacementOptions>, PlacementOptionsValidator>();
        services.AddSingleton<ClusterLoad>();
        services.AddHostedService(sp => sp.GetRequiredService<ClusterLoad>());
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, SiloDrain>();
        services.AddSingleton<DeviceRegistry>();
        services.AddSingleton<IDeliveryPublisher, ObserverDeliveryPublisher>();
        services.AddGridMetrics();
        // Orleans' watchdog starts its platform thread before it stamps its first participant check, so that thread's
        // first tick can measure from timestamp 0: on the host clock that is the machine's boot, and a fresh silo warns
        // that the check "has not completed" for the machine's uptime. Counted from the silo's creation, 0 is harmless.
        services.AddKeyedSingleton<TimeProvider>(
            TimeProviderNames.Membership,
            (sp, _) => new RebasedTimeProvider(sp.GetService<TimeProvider>() ?? TimeProvider.System));

        var timers = configuration.GetSection(TimerOptions.Section).Get<TimerOptions>() ?? new TimerOptions();
        if (timers.PreciseTimers)
        {
            services.AddSingleton<PreciseTimeProvider>(_ => new PreciseTimeProvider());
            services.AddSingleton<IActivitySignal>(sp => sp.GetRequiredService<PreciseTimeProvider>());
            services.AddKeyedSingleton<TimeProvider>(TimeProviderNames.Grains, (sp, _) => sp.GetRequiredService<PreciseTimeProvider>());
            services.TryAddKeyedSingleton<TimeProvider>(StreamInferClock.Key, (sp, _) => sp.GetRequiredService<PreciseTimeProvider>());
        }
        else
        {
            services.TryAddKeyedSingleton<TimeProvider>(StreamInferClock.Key, (sp, _) => sp.GetService<TimeProvider>() ?? TimeProvider.System);
            services.AddSingleton<IActivitySignal, NoActivitySignal>();
        }

        // Model versions: in memory on the embedded default, in Redis in a cluster, where they survive the silo that
        // held them.
        var endpoint = StreamInferClustering.Read(configuration);
        var storage = StreamInfer.Grains.Models.Versions.ModelVersionGrain.Storage;
        if (endpoint.UsesRedis)
        {
            silo.AddRedisGrainStorage(storage, o => o.ConfigurationOptions = StackExchange.Redis.ConfigurationOptions.Parse(endpoint.Redis!));
        }
        else
        {
            silo.AddMemoryGrainStorage(storage);
        }

        if (StreamInferDashboard.Enabled(configuration))
        {
            // Grain call profiling runs only while someone has the dashboard open (and a minute after).
            silo.AddDashboard();
        }

        return silo;
    }
}
