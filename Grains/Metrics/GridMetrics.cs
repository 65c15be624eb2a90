using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace StreamInfer.Grains.Metrics;

/// <summary>
/// The grid's instruments (System.Diagnostics.Metrics, meter <see cref="MeterName"/>), exported by OpenTelemetry as
/// Prometheus text at <c>/metrics</c>. Names follow the peers' conventions where they exist (vLLM's time to first token
/// and inter-token latency, Triton's queue and compute durations): in Prometheus form <c>streaminfer_*</c>, durations in
/// seconds. Every recording takes a stack <see cref="System.Diagnostics.TagList"/> (no allocation) and is made once per request or once
/// per batch step, never once per token — save <see cref="Delivered"/>, one untagged histogram update per frame written
/// (small beside the frame's own serialization and socket write).
/// </summary>
public sealed class GridMetrics
{
    public const string MeterName = "StreamInfer";

    /// <summary>.NET's built-in runtime meter (collections and their pause time, thread pool, CPU, memory), exported
    /// beside the grid's own: a pause shows up as latency everywhere at once.</summary>
    public const string RuntimeMeterName = "System.Runtime";

    /// <summary>Configuration of the standalone silo's metrics listener: <c>StreamInfer:Metrics:Port</c> (0, the
    /// default, serves none; frontends serve theirs at <c>/metrics</c>).</summary>
    public const string MetricsSection = "StreamInfer:Metrics";

    /// <summary>Latency buckets, seconds: from half a millisecond (the return path) to a minute (long generations).</summary>
    private static readonly IReadOnlyList<double> Seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    /// <summary>
    /// Fine latency buckets, seconds, for what the grid adds per token: a tenth of a millisecond to a second, dense around
    /// the 1 ms goal per token (docs/decisions.md D11) so a 99th percentile read from them is within a quarter of a
    /// millisecond.
    /// </summary>
    private static readonly IReadOnlyList<double> Fine = [0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.00125, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1];

    /// <summary>Batch size buckets: powers of two up to 512.</summary>
    private static readonly IReadOnlyList<int> Rows = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];


    private readonly Counter<long> _requestsEnded;

    private readonly Counter<long> _requestsRefused;

    private readonly Histogram<double> _queueTime;

    private readonly Histogram<double> _computeTime;

    private readonly Histogram<double> _requestDuration;

    private readonly Histogram<double> _timeToFirstToken;

    private readonly Histogram<double> _interTokenLatency;

    private readonly Histogram<double> _stepGap;

    private readonly Histogram<double> _stepHandoff;

    private readonly Histogram<double> _deliveryTransit;

    private readonly Histogram<double> _deliveryLatency;

    private readonly Histogram<int> _batchSize;

    private readonly UpDownCounter<long> _queueDepth;

    private readonly UpDownCounter<long> _activeSequences;

    private readonly UpDownCounter<long> _heldSequences;

    private readonly UpDownCounter<long> _connections;

    /// <summary>Creates the instruments on a meter from <paramref name="meterFactory"/> (one per service container, as
    /// ASP.NET Core's own metrics do).</summary>
    public GridMetrics(IMeterFactory meterFactory)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        var meter = meterFactory.Create(MeterName, typeof(GridMetrics).Assembly.GetName().Version?.ToString());
        _requestsEnded = meter.CreateCounter<long>(
            "streaminfer.requests", "{request}", "Requests that ended at a batcher, by model, version, device and code (ok, or the error code; cancelled).");
        _requestsRefused = meter.CreateCounter<long>(
            "streaminfer.refused", "{request}", "Requests refused at admission, by model and code (rate_limited, backlog_full, overloaded, invalid_input, model_unavailable, bad_request).");
        _queueTime = meter.CreateHistogram(
            "streaminfer.request.queue_time", "s", "Time from admission at the batcher to the start of the request's batch (or a decoder sequence's join).", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Seconds });
        _computeTime = meter.CreateHistogram(
            "streaminfer.request.compute_time", "s", "Time a request's batch spent on the device (tensor and echo models).", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Seconds });
        _requestDuration = meter.CreateHistogram(
            "streaminfer.request.duration", "s", "Time from admission at the batcher to the request's end.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Seconds });
        _timeToFirstToken = meter.CreateHistogram(
            "streaminfer.time_to_first_token", "s", "Decoders: time from admission to a sequence's first token.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Seconds });
        _interTokenLatency = meter.CreateHistogram(
            "streaminfer.inter_token_latency", "s", "Decoders: time between the ends of consecutive decode steps of a running set (every running sequence gets one token per step); recorded once per step.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Fine });
        _stepGap = meter.CreateHistogram(
            "streaminfer.decode.step_gap", "s", "Decoders: time the device waited between consecutive decode steps of a running set (the batcher's own work between steps: leaving, admitting, planning); recorded once per step.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Fine });
        _stepHandoff = meter.CreateHistogram(
            "streaminfer.decode.handoff", "s", "Decoders: time from the end of a decode step on the device thread to the batcher's turn that takes its tokens (waking a thread of the Orleans scheduler: the first part of the delivery transit); recorded once per step.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Fine });
        _deliveryTransit = meter.CreateHistogram(
            "streaminfer.delivery.transit", "s", "Time from the end of the batch or decode step that produced a delivery batch to the batch reaching its frontend, before any of its frames is written: the grid's own part of the return path, once per batch. Between machines it includes their clocks' difference.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Fine });
        _deliveryLatency = meter.CreateHistogram(
            "streaminfer.delivery.latency", "s", "Time from the end of the batch or decode step that produced a frame to the frame's write to the client's WebSocket or event stream completing, by path (ws, sse): the grid's return path, once per frame. Between machines it includes their clocks' difference.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Fine });
        _batchSize = meter.CreateHistogram(
            "streaminfer.batch.size", "{request}", "Requests per batch (tensor and echo models) or sequences per decode step.", advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = Rows });
        _queueDepth = meter.CreateUpDownCounter<long>(
            "streaminfer.queue.depth", "{request}", "Requests queued at a batcher, not yet running.");
        _activeSequences = meter.CreateUpDownCounter<long>(
            "streaminfer.sequences.active", "{sequence}", "Decoders: sequences in the running set.");
        _heldSequences = meter.CreateUpDownCounter<long>(
            "streaminfer.sequences.held", "{sequence}", "Stateful models: sequences whose state a batcher holds (started, not yet ended, expired or freed).");
        _connections = meter.CreateUpDownCounter<long>(
            "streaminfer.connections.open", "{connection}", "WebSocket connections and gRPC streams a frontend holds.");
    }

    /// <summary>The model label of a refusal for a model that is not served.</summary>
    public const string UnknownModel = "(unknown)";

    /// <summary>Code tag value of a request that ended well.</summary>
    public const string Ok = "ok";

    public void Ended(string model, string version, string device, string code, double durationSeconds)
    {
        _requestsEnded.Add(1, new TagList { { "model", model }, { "version", version }, { "device", device }, { "code", code } });
        _requestDuration.Record(durationSeconds, new TagList { { "model", model }, { "version", version }, { "device", device } });
    }

    public void Refused(string model, ErrorCode code)
        => _requestsRefused.Add(1, new TagList { { "model", model }, { "code", code.ToWire() } });

    /// <summary>One batch (or decode step) of <paramref name="size"/> ran.</summary>
    public void Batch(string model, string version, string device, int size)
        => _batchSize.Record(size, new TagList { { "model", model }, { "version", version }, { "device", device } });

    public void Queued(string model, string version, string device, double queueSeconds, double computeSeconds)
    {
        var tags = new TagList { { "model", model }, { "version", version }, { "device", device } };
        _queueTime.Record(queueSeconds, tags);
        if (computeSeconds >= 0)
        {
            _computeTime.Record(computeSeconds, tags);
        }
    }

    public void FirstToken(string model, string version, string device, double seconds)
        => _timeToFirstToken.Record(seconds, new TagList { { "model", model }, { "version", version }, { "device", device } });

    /// <summary>A decode step ended <paramref name="secondsSincePreviousStep"/> after the previous one of the same running
    /// set; the device had waited <paramref name="gapSeconds"/> for it after that previous one.</summary>
    public void Step(string model, string version, string device, double secondsSincePreviousStep, double gapSeconds)
    {
        var tags = new TagList { { "model", model }, { "version", version }, { "device", device } };
        _interTokenLatency.Record(secondsSincePreviousStep, tags);
        _stepGap.Record(gapSeconds, tags);
    }

    /// <summary>The batcher took a decode step that ended <paramref name="seconds"/> ago on the device thread.</summary>
    public void HandedOff(string model, string device, double seconds)
        => _stepHandoff.Record(seconds, new TagList { { "model", model }, { "device", device } });

    /// <summary>A delivery batch produced <paramref name="seconds"/> ago reached its frontend.</summary>
    public void Arrived(double seconds) => _deliveryTransit.Record(seconds);

    /// <summary>A frame produced <paramref name="seconds"/> ago has been written to its client on <paramref name="path"/>
    /// (<see cref="WebSocketPath"/> or <see cref="EventStreamPath"/>).</summary>
    public void Delivered(string path, double seconds)
        => _deliveryLatency.Record(seconds, new KeyValuePair<string, object?>("path", path));

    /// <summary>Path label of a frame written to a WebSocket.</summary>
    public const string WebSocketPath = "ws";

    /// <summary>Path label of a chunk written to a Server-Sent Events stream.</summary>
    public const string EventStreamPath = "sse";

    /// <summary>Moves a batcher's queue-depth and active-sequence gauges by what changed since it last reported.</summary>
    public void Depth(string model, string device, long queuedDelta, long activeDelta)
    {
        var tags = new TagList { { "model", model }, { "device", device } };
        if (queuedDelta != 0)
        {
            _queueDepth.Add(queuedDelta, tags);
        }

        if (activeDelta != 0)
        {
            _activeSequences.Add(activeDelta, tags);
        }
    }

    /// <summary>Moves a batcher's held stateful sequences gauge by <paramref name="delta"/>.</summary>
    public void Held(string model, string device, long delta)
        => _heldSequences.Add(delta, new TagList { { "model", model }, { "device", device } });

    public void Connection(int delta) => _connections.Add(delta);
}

/// <summary>Registers <see cref="GridMetrics"/> once per container, whichever of silo and frontend asks first.</summary>
public static class GridMetricsServiceCollectionExtensions
{
    public static IServiceCollection AddGridMetrics(this IServiceCollection services)
    {
        services.AddMetrics();
        services.TryAddSingleton<GridMetrics>();
        return services;
    }
}
