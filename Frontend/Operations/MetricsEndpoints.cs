using System.Diagnostics.Metrics;
using System.Text.Json;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using StreamInfer.Grains.Metrics;

namespace StreamInfer.Frontend.Operations;

/// <summary>
/// <c>GET /metrics</c>: the <see cref="GridMetrics"/> instruments (and this process's grid, when it co-hosts the silo)
/// in Prometheus text, by OpenTelemetry's Prometheus exporter. <c>GET /metrics/json</c>: the same instruments as a
/// compact JSON summary, read through a second OpenTelemetry reader collected on request: counters and gauges with
/// their value per label set, histograms with count, sum, mean and the buckets holding the median and the 99th
/// percentile.
/// </summary>
internal static class MetricsEndpoints
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static IServiceCollection AddStreamInferMetrics(this IServiceCollection services)
    {
        var snapshot = new SnapshotExporter();
        snapshot.Reader = new BaseExportingMetricReader(snapshot) { TemporalityPreference = MetricReaderTemporalityPreference.Cumulative };
        services.AddSingleton(snapshot);
        services.AddOpenTelemetry().WithMetrics(metrics => OwnGridOnly(metrics)
            .AddMeter(GridMetrics.MeterName)
            // .NET's own: collections and their pauses, thread pool, CPU (dotnet_gc_*, dotnet_thread_pool_*, ...).
            .AddMeter(GridMetrics.RuntimeMeterName)
            // No cached scrapes: a scrape reads the instruments as they are (scrapes come seconds apart).
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0)
            .AddReader(snapshot.Reader));
        return services;
    }

    /// <summary>
    /// Keeps this host's own grid instruments (and the process-wide runtime meter) and drops other hosts': meters are
    /// process-wide, and another host's meter of the same name (a second grid in one process, as in tests) would share
    /// this one's metric streams, then end them when it is disposed.
    /// </summary>
    private static MeterProviderBuilder OwnGridOnly(MeterProviderBuilder metrics)
    {
        ((IDeferredMeterProviderBuilder)metrics).Configure((sp, builder) =>
        {
            var own = sp.GetRequiredService<IMeterFactory>();
            builder.AddView(instrument => instrument.Meter.Scope is null || ReferenceEquals(instrument.Meter.Scope, own) ? null : MetricStreamConfiguration.Drop);
        });
        return metrics;
    }

    public static WebApplication MapMetrics(this WebApplication app)
    {
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapGet("/metrics/json", (SnapshotExporter snapshot) => Results.Json(snapshot.Read(), Json));
        return app;
    }

    /// <summary>Keeps the metrics of the last collection; <see cref="Read"/> collects now.</summary>
    internal sealed class SnapshotExporter : BaseExporter<Metric>
    {
        private readonly Lock _gate = new();
        private SortedDictionary<string, MetricSummary> _last = new(StringComparer.Ordinal);

        /// <summary>The reader that collects into this exporter.</summary>
        public MetricReader? Reader { get; set; }

        public SortedDictionary<string, MetricSummary> Read()
        {
            lock (_gate)
            {
                // Collect runs Export synchronously on this thread (one collection at a time).
                Reader?.Collect(5000);
                return _last;
            }
        }

        public override ExportResult Export(in Batch<Metric> batch)
        {
            var metrics = new SortedDictionary<string, MetricSummary>(StringComparer.Ordinal);
            foreach (var metric in batch)
            {
                var points = new List<PointSummary>();
                foreach (ref readonly var point in metric.GetMetricPoints())
                {
                    var labels = new SortedDictionary<string, string?>(StringComparer.Ordinal);
                    foreach (var tag in point.Tags)
                    {
                        labels[tag.Key] = tag.Value?.ToString();
                    }

                    points.Add(Summarize(metric.MetricType, point, labels));
                }

                metrics[metric.Name] = new MetricSummary(metric.Unit, metric.Description, points);
            }

            _last = metrics;
            return ExportResult.Success;
        }

        private static PointSummary Summarize(MetricType type, in MetricPoint point, SortedDictionary<string, string?> labels)
        {
            switch (type)
            {
                case MetricType.LongSum or MetricType.LongSumNonMonotonic:
                    return new PointSummary(labels, point.GetSumLong());
                case MetricType.DoubleSum or MetricType.DoubleSumNonMonotonic:
                    return new PointSummary(labels, point.GetSumDouble());
                case MetricType.LongGauge:
                    return new PointSummary(labels, point.GetGaugeLastValueLong());
                case MetricType.DoubleGauge:
                    return new PointSummary(labels, point.GetGaugeLastValueDouble());
                case MetricType.Histogram:
                    var count = point.GetHistogramCount();
                    var sum = point.GetHistogramSum();
                    double? p50 = null, p99 = null;
                    long seen = 0;
                    foreach (var bucket in point.GetHistogramBuckets())
                    {
                        seen += bucket.BucketCount;
                        if (p50 is null && count > 0 && seen * 2 >= count)
                        {
                            p50 = bucket.ExplicitBound;
                        }

                        if (p99 is null && count > 0 && seen * 100 >= count * 99)
                        {
                            p99 = bucket.ExplicitBound;
                        }
                    }

                    return new PointSummary(labels, null, count, sum, count == 0 ? null : sum / count, Finite(p50), Finite(p99));
                default:
                    return new PointSummary(labels, null);
            }
        }

        // The last bucket's bound is +Inf, which JSON cannot carry: null says "above the largest bound".
        private static double? Finite(double? bound) => bound is { } b && double.IsFinite(b) ? b : null;
    }

    internal sealed record MetricSummary(string Unit, string Description, List<PointSummary> Points);

    /// <summary>One label set's value (counters, gauges), or count, sum, mean and the upper bounds of the buckets holding
    /// the median and the 99th percentile (histograms).</summary>
    internal sealed record PointSummary(
        SortedDictionary<string, string?> Labels,
        double? Value,
        long? Count = null,
        double? Sum = null,
        double? Mean = null,
        double? P50Le = null,
        double? P99Le = null);
}
