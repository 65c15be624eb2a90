using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Orleans.Dashboard;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;
using StreamInfer.Grains.Placement;
using StreamInfer.Grains.Clocks;

namespace StreamInfer.Grains.Hosting;

/// <summary>Wiring of the StreamInfer grains into a silo.</summary>
public static class StreamInferSiloExtensions
{
    /// <summary>
    /// Adds the session and batcher grains' services (options, model catalog, device workers) and the delivery streams
    /// (memory streams tuned for latency, with the in-memory pub-sub store they need) to a silo.
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
        services.AddOptions<ModelRepositoryOptions>().Bind(configuration.GetSection(ModelRepositoryOptions.Section));
        services.AddOptions<DeviceOptions>().Bind(configuration.GetSection(DeviceOptions.Section)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<DeviceOptions>, DeviceOptionsValidator>();
        services.AddSingleton<ModelCatalog>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, ModelLoader>();
        services.AddHostedService<StreamInfer.Grains.Models.Versions.RepositoryWatch>();
        services.AddPlacementDirector<SiloKeyPlacement, SiloKeyPlacementDirector>();
        services.AddOptions<PlacementOptions>().Bind(configuration.GetSection(PlacementOptions.Section)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<PlacementOptions>, PlacementOptionsValidator>();
        services.AddSingleton<ClusterLoad>();
        services.AddHostedService(sp => sp.GetRequiredService<ClusterLoad>());
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, SiloDrain>();
        services.AddSingleton<DeviceRegistry>();
        // Orleans' watchdog starts its platform thread before it stamps its first participant check, so that thread's
        // first tick can measure from timestamp 0: on the host clock that is the machine's boot, and a fresh silo warns
        // that the check "has not completed" for the machine's uptime. Counted from the silo's creation, 0 is harmless.
        services.AddKeyedSingleton<TimeProvider>(
            TimeProviderNames.Membership,
            (sp, _) => new RebasedTimeProvider(sp.GetService<TimeProvider>() ?? TimeProvider.System));

        var streams = configuration.GetSection(DeliveryStreamOptions.Section).Get<DeliveryStreamOptions>() ?? new DeliveryStreamOptions();
        if (streams.PreciseTimers)
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

        // Stream subscriptions (a frontend's delivery subscription must outlive any one silo) and model versions: in
        // memory on the embedded default, in Redis in a cluster, where they survive the silo that held them.
        var endpoint = StreamInferClustering.Read(configuration);
        foreach (var storage in (string[])["PubSubStore", StreamInfer.Grains.Models.Versions.ModelVersionGrain.Storage])
        {
            if (endpoint.UsesRedis)
            {
                silo.AddRedisGrainStorage(storage, o => o.ConfigurationOptions = StackExchange.Redis.ConfigurationOptions.Parse(endpoint.Redis!));
            }
            else
            {
                silo.AddMemoryGrainStorage(storage);
            }
        }

        if (StreamInferDashboard.Enabled(configuration))
        {
            // Grain call profiling runs only while someone has the dashboard open (and a minute after).
            silo.AddDashboard();
        }

        silo.AddMemoryStreams(DeliveryStreams.ProviderName, b =>
        {
            b.ConfigurePartitioning(Math.Clamp(streams.Partitions, 1, 64));
            b.ConfigurePullingAgent(ob => ob.Configure(o =>
            {
                o.GetQueueMsgsTimerPeriod = streams.EffectivePollPeriod;
                o.BatchContainerBatchSize = streams.ReadBatchSize;
            }));
        });
        return silo;
    }
}
