using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace StreamInfer.Grains.Metrics;

/// <summary>
/// The grid's instruments (System.Diagnostics.Metrics, meter <see cref="MeterName"/>), exported by OpenTelemetry as
/// Prometheus text at <c>/metrics</c>. Names follow the peers' conventions where they exist (vLLM's time to first token
/// and inter-token latency, Triton's queue and compute durations): in Prometheus form <c>streaminfer_*</c>, durations in
/// seconds. Every recording takes a stack <see cref="System.Diagnostics.TagList"/> (no allocation) and is made once per request or once
/// per batch step, never once per token — save <see cref="Delivered"/>, one untagged histogram update per frame written
/// (small beside the frame's own serialization and socket write).
/// </summary>
public static class GridMetrics
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

    private static readonly Meter Meter = new(MeterName, typeof(GridMetrics).Assembly.GetName().Version?.ToString());

    private static readonly Counter<long> RequestsEnded = Meter.CreateCounter<long>(
        "streaminfer.requests", "{request}", "Requests that ended at a batcher, by model, version, device and code (ok, or the error code; cancelled).");

    private static readonly Counter<long> RequestsRefused = Meter.CreateCounter<long>(
        "streaminfer.refused", "{request}", "Requests refused at admission, by model and code (rate_limited, backlog_full, overloaded, invalid_input, model_unavailable, bad_request).");

    private static readonly Histogram<double> QueueTime = Meter.CreateHistogram(
        "streaminfer.request.queue_time", "s", "Time from admission at the batcher to the start of the request's batch (or a decoder sequence's join).", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Seconds });

    private static readonly Histogram<double> ComputeTime = Meter.CreateHistogram(
        "streaminfer.request.compute_time", "s", "Time a request's batch spent on the device (tensor and echo models).", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Seconds });

    private static readonly Histogram<double> RequestDuration = Meter.CreateHistogram(
        "streaminfer.request.duration", "s", "Time from admission at the batcher to the request's end.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Seconds });

    private static readonly Histogram<double> TimeToFirstToken = Meter.CreateHistogram(
        "streaminfer.time_to_first_token", "s", "Decoders: time from admission to a sequence's first token.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Seconds });

    private static readonly Histogram<double> InterTokenLatency = Meter.CreateHistogram(
        "streaminfer.inter_token_latency", "s", "Decoders: time between the ends of consecutive decode steps of a running set (every running sequence gets one token per step); recorded once per step.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Fine });

    private static readonly Histogram<double> StepGap = Meter.CreateHistogram(
        "streaminfer.decode.step_gap", "s", "Decoders: time the device waited between consecutive decode steps of a running set (the batcher's own work between steps: leaving, admitting, planning); recorded once per step.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Fine });

    private static readonly Histogram<double> StepHandoff = Meter.CreateHistogram(
        "streaminfer.decode.handoff", "s", "Decoders: time from the end of a decode step on the device thread to the batcher's turn that takes its tokens (waking a thread of the Orleans scheduler: the first part of the delivery transit); recorded once per step.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Fine });

    private static readonly Histogram<double> DeliveryTransit = Meter.CreateHistogram(
        "streaminfer.delivery.transit", "s", "Time from the end of the batch or decode step that produced a delivery batch to the batch reaching its frontend, before any of its frames is written: the grid's own part of the return path, once per batch. Between machines it includes their clocks' difference.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Fine });

    private static readonly Histogram<double> DeliveryLatency = Meter.CreateHistogram(
        "streaminfer.delivery.latency", "s", "Time from the end of the batch or decode step that produced a frame to the frame's write to the client's WebSocket or event stream completing, by path (ws, sse): the grid's return path, once per frame. Between machines it includes their clocks' difference.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Fine });

    private static readonly Histogram<int> BatchSize = Meter.CreateHistogram(
        "streaminfer.batch.size", "{request}", "Requests per batch (tensor and echo models) or sequences per decode step.", advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = Rows });

    private static readonly UpDownCounter<long> QueueDepth = Meter.CreateUpDownCounter<long>(
        "streaminfer.queue.depth", "{request}", "Requests queued at a batcher, not yet running.");

    private static readonly UpDownCounter<long> ActiveSequences = Meter.CreateUpDownCounter<long>(
        "streaminfer.sequences.active", "{sequence}", "Decoders: sequences in the running set.");

    private static readonly UpDownCounter<long> Connections = Meter.CreateUpDownCounter<long>(
        "streaminfer.connections.open", "{connection}", "WebSocket connections a frontend holds.");

    /// <summary>The model label of a refusal for a model that is not served.</summary>
    public const string UnknownModel = "(unknown)";

    /// <summary>Code tag value of a request that ended well.</summary>
    public const string Ok = "ok";

    public static void Ended(string model, string version, string device, string code, double durationSeconds)
    {
        RequestsEnded.Add(1, new TagList { { "model", model }, { "version", version }, { "device", device }, { "code", code } });
        RequestDuration.Record(durationSeconds, new TagList { { "model", model }, { "version", version }, { "device", device } });
    }

    public static void Refused(string model, ErrorCode code)
        => RequestsRefused.Add(1, new TagList { { "model", model }, { "code", code.ToWire() } });

    /// <summary>One batch (or decode step) of <paramref name="size"/> ran.</summary>
    public static void Batch(string model, string version, string device, int size)
        => BatchSize.Record(size, new TagList { { "model", model }, { "version", version }, { "device", device } });

    public static void Queued(string model, string version, string device, double queueSeconds, double computeSeconds)
    {
        var tags = new TagList { { "model", model }, { "version", version }, { "device", device } };
        QueueTime.Record(queueSeconds, tags);
        if (computeSeconds >= 0)
        {
            ComputeTime.Record(computeSeconds, tags);
        }
    }

    public static void FirstToken(string model, string version, string device, double seconds)
        => TimeToFirstToken.Record(seconds, new TagList { { "model", model }, { "version", version }, { "device", device } });

    /// <summary>A decode step ended <paramref name="secondsSincePreviousStep"/> after the previous one of the same running
    /// set; the device had waited <paramref name="gapSeconds"/> for it after that previous one.</summary>
    public static void Step(string model, string version, string device, double secondsSincePreviousStep, double gapSeconds)
    {
        var tags = new TagList { { "model", model }, { "version", version }, { "device", device } };
        InterTokenLatency.Record(secondsSincePreviousStep, tags);
        StepGap.Record(gapSeconds, tags);
    }

    /// <summary>The batcher took a decode step that ended <paramref name="seconds"/> ago on the device thread.</summary>
    public static void HandedOff(string model, string device, double seconds)
        => StepHandoff.Record(seconds, new TagList { { "model", model }, { "device", device } });

    /// <summary>A delivery batch produced <paramref name="seconds"/> ago reached its frontend.</summary>
    public static void Arrived(double seconds) => DeliveryTransit.Record(seconds);

    /// <summary>A frame produced <paramref name="seconds"/> ago has been written to its client on <paramref name="path"/>
    /// (<see cref="WebSocketPath"/> or <see cref="EventStreamPath"/>).</summary>
    public static void Delivered(string path, double seconds)
        => DeliveryLatency.Record(seconds, new KeyValuePair<string, object?>("path", path));

    /// <summary>Path label of a frame written to a WebSocket.</summary>
    public const string WebSocketPath = "ws";

    /// <summary>Path label of a chunk written to a Server-Sent Events stream.</summary>
    public const string EventStreamPath = "sse";

    /// <summary>Moves a batcher's queue-depth and active-sequence gauges by what changed since it last reported.</summary>
    public static void Depth(string model, string device, long queuedDelta, long activeDelta)
    {
        var tags = new TagList { { "model", model }, { "device", device } };
        if (queuedDelta != 0)
        {
            QueueDepth.Add(queuedDelta, tags);
        }

        if (activeDelta != 0)
        {
            ActiveSequences.Add(activeDelta, tags);
        }
    }

    public static void Connection(int delta) => Connections.Add(delta);
}
