using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Metrics;
using StreamInfer.Grains.Options;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace StreamInfer.Silo;

/// <summary>
/// A standalone silo: the grains and devices without sockets. Localhost clustering by default; with
/// <c>StreamInfer:Orleans:Redis</c> set it joins that cluster, and frontends reach it as Orleans clients
/// through its gateway port.
/// </summary>
public static class SiloHost
{
    public static IHost Build(string[] args, Action<HostApplicationBuilder>? configure = null)
    {
        // As the frontend does: the shipped appsettings.json is read from the application's folder whatever the working
        // directory (deploy scripts start silos from the repository root); --contentRoot still overrides it.
        var builder = args.Any(a => a.StartsWith("--contentRoot", StringComparison.OrdinalIgnoreCase))
            ? Host.CreateApplicationBuilder(args)
            : Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.AddFilter("Orleans", LogLevel.Warning).AddFilter("Polly", LogLevel.Warning);
        configure?.Invoke(builder);
        var endpoint = StreamInferClustering.Read(builder.Configuration);
        builder.UseOrleans(silo =>
        {
            if (endpoint.Kubernetes)
            {
                silo.UseKubernetesHosting();
            }

            silo.UseStreamInferClustering(endpoint);
            silo.AddStreamInfer(builder.Configuration);
        });
        // The silo's grid metrics (a silo serves no HTTP otherwise): Prometheus text at http://HOST:PORT/metrics
        // (StreamInfer:Metrics:Port, off by default; Host "*" by default, every interface).
        var metricsPort = MetricsPort(builder.Configuration);
        if (metricsPort > 0)
        {
            builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
                .AddMeter(GridMetrics.MeterName)
                .AddMeter(GridMetrics.RuntimeMeterName)
                .AddPrometheusHttpListener(o =>
                {
                    o.Host = builder.Configuration.GetValue($"{GridMetrics.MetricsSection}:Host", "*")!;
                    o.Port = metricsPort;
                    o.ScrapeResponseCacheDurationMilliseconds = 0;
                }));
        }

        // SIGTERM: the silo drains its batchers (Placement:DrainTimeout) before Orleans stops; allow for both.
        var drain = builder.Configuration.GetValue($"{PlacementOptions.Section}:{nameof(PlacementOptions.DrainTimeout)}", new PlacementOptions().DrainTimeout);
        // Past the drain: the last deliveries' retries (10 s) and Orleans' own stop.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = drain + TimeSpan.FromSeconds(25));
        return builder.Build();
    }

    /// <summary><c>StreamInfer:Metrics:Port</c>: 0 (off) or a port in [1, 65535]; out of range, the silo does not start.</summary>
    private static int MetricsPort(IConfiguration configuration)
    {
        var port = configuration.GetValue($"{GridMetrics.MetricsSection}:Port", 0);
        return port is < 0 or > 65535
            ? throw new OptionsValidationException(GridMetrics.MetricsSection, typeof(int), [$"{GridMetrics.MetricsSection}:Port must be 0 (off) or in [1, 65535]; got {port}."])
            : port;
    }
}
