using System.Globalization;
using System.Text;
using System.Text.Json;

namespace StreamInfer.LoadGen;

/// <summary>The merged results of a run: the table, and the JSON object.</summary>
internal sealed class Report
{
    private static readonly double[] Percentiles = [50, 95, 99];

    private Report(Options options)
    {
        Options = options;
    }

    public Options Options { get; }

    public int ConnectionsOpened { get; private init; }

    public int ConnectFailures { get; private init; }

    public IReadOnlyDictionary<string, int> ConnectErrors { get; private init; } = new Dictionary<string, int>();

    public int ConnectionsDropped { get; private init; }

    public IReadOnlyDictionary<string, int> DropReasons { get; private init; } = new Dictionary<string, int>();

    public long Requests { get; private init; }

    public double RequestsPerSecond { get; private init; }

    /// <summary>p50, p95, p99 in ms; NaN when nothing was measured.</summary>
    public IReadOnlyList<double> LatencyPercentiles { get; private init; } = [];

    public double LatencyMax { get; private init; } = double.NaN;

    public double LatencyMean { get; private init; } = double.NaN;

    /// <summary>Requests by the second of the measured window they were sent in: how many, and their p50, p99, max.</summary>
    public IReadOnlyList<SecondSummary> Series { get; private init; } = [];

    public IReadOnlyList<KeyValuePair<string, long>> Outcomes { get; private init; } = [];

    public IReadOnlyList<KeyValuePair<string, long>> Warnings { get; private init; } = [];

    public IReadOnlyList<KeyValuePair<string, long>> ConnectionErrors { get; private init; } = [];

    public long Sent { get; private init; }

    public long Answered { get; private init; }

    public long Unanswered { get; private init; }

    public long UnansweredOnDroppedConnections { get; private init; }

    public long UnknownOrDuplicate { get; private init; }

    public long UnexpectedFrames { get; private init; }

    public long Overdue { get; private init; }

    public long LateAnswers { get; private init; }

    public double ConnectSeconds { get; private init; }

    /// <summary>Measured results that carried a <c>timing</c> (the grid's tensor and echo models send one).</summary>
    public long TimedResults { get; private init; }

    /// <summary>Mean rows per batch, each batch counted once (not once per request in it); NaN without timings.</summary>
    public double MeanBatchSize { get; private init; } = double.NaN;

    /// <summary>Mean compute_ms per batch, each batch counted once; NaN without timings.</summary>
    public double MeanBatchComputeMs { get; private init; } = double.NaN;

    /// <summary>Mean queue_ms per request; NaN without timings.</summary>
    public double MeanQueueMs { get; private init; } = double.NaN;

    /// <summary>Lost or duplicated answers are bugs in the server; the exit code says so.</summary>
    /// <summary>Answers checked against the sent bytes (<c>--verify-every</c>), and those that did not return them.</summary>
    public long Verified { get; private init; }

    public long Mismatches { get; private init; }

    public bool Failed => Unanswered > 0 || UnknownOrDuplicate > 0 || Mismatches > 0 || ConnectionsOpened == 0;

    public static Report Build(
        Options options,
        IReadOnlyList<(ConnectionStats Stats, long Sent)> connections,
        int connectFailures,
        IReadOnlyDictionary<string, int> connectErrors,
        double connectSeconds)
    {
        var total = 0;
        foreach (var (stats, _) in connections)
        {
            total += stats.Latencies.Count;
        }

        var latencies = new double[total];
        var perSecond = new List<double>?[(int)Math.Ceiling(options.DurationSeconds)];
        // Answers by the second they arrived in (not the one their request was sent in): a stall shows as the seconds
        // with few answers, and the answers that end it land where they came.
        var endedResults = new int[perSecond.Length];
        var endedErrors = new int[perSecond.Length];
        // Connections with no answer in a second: a stall of some clients (their sessions' silo died) shows apart
        // from a slowdown of all.
        var silent = new int[perSecond.Length];
        var at = 0;
        var outcomes = new Dictionary<string, long>(StringComparer.Ordinal) { ["result"] = 0 };
        var warnings = new Dictionary<string, long>(StringComparer.Ordinal);
        var connectionErrors = new Dictionary<string, long>(StringComparer.Ordinal);
        long sent = 0, answered = 0, lostOnDrop = 0, abandoned = 0, unknown = 0, unexpected = 0, overdue = 0, late = 0, timed = 0, verified = 0, mismatches = 0;
        double batches = 0, queueMs = 0, batchComputeMs = 0;
        var dropReasons = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (stats, connectionSent) in connections)
        {
            stats.Latencies.CopyTo(latencies, at);
            var answeredIn = new bool[perSecond.Length];
            for (var i = 0; i < stats.Latencies.Count; i++)
            {
                var second = (int)stats.SentAtSeconds[i];
                if (second >= 0 && second < perSecond.Length)
                {
                    (perSecond[second] ??= []).Add(stats.Latencies[i]);
                }

                var ended = (int)(stats.SentAtSeconds[i] + (stats.Latencies[i] / 1000.0));
                if (ended >= 0 && ended < perSecond.Length)
                {
                    (stats.IsResult[i] ? endedResults : endedErrors)[ended]++;
                    answeredIn[ended] = true;
                }
            }

            for (var second = 0; second < silent.Length; second++)
            {
                silent[second] += answeredIn[second] ? 0 : 1;
            }

            at += stats.Latencies.Count;
            Merge(outcomes, stats.Outcomes);
            Merge(warnings, stats.Warnings);
            Merge(connectionErrors, stats.ConnectionErrors);
            sent += connectionSent;
            answered += stats.Answered;
            lostOnDrop += stats.LostOnDrop;
            abandoned += stats.Abandoned;
            unknown += stats.UnknownOrDuplicate;
            unexpected += stats.UnexpectedFrames;
            overdue += stats.Overdue;
            late += stats.LateAnswers;
            timed += stats.TimedResults;
            verified += stats.Verified;
            mismatches += stats.Mismatches;
            batches += stats.Batches;
            queueMs += stats.QueueMsSum;
            batchComputeMs += stats.BatchComputeMsSum;
            if (stats.DropReason is { } reason)
            {
                dropReasons[reason] = dropReasons.GetValueOrDefault(reason) + 1;
            }
        }

        Array.Sort(latencies);
        var series = new List<SecondSummary>(perSecond.Length);
        for (var second = 0; second < perSecond.Length; second++)
        {
            var sample = perSecond[second]?.ToArray() ?? [];
            Array.Sort(sample);
            series.Add(new SecondSummary(second, sample.Length, Percentile(sample, 50), Percentile(sample, 99), sample.Length == 0 ? double.NaN : sample[^1], endedResults[second], endedErrors[second], silent[second]));
        }

        var sum = 0.0;
        foreach (var l in latencies)
        {
            sum += l;
        }

        return new Report(options)
        {
            ConnectionsOpened = connections.Count,
            ConnectFailures = connectFailures,
            ConnectErrors = connectErrors,
            ConnectionsDropped = dropReasons.Values.Sum(),
            DropReasons = dropReasons,
            Requests = latencies.Length,
            RequestsPerSecond = latencies.Length / options.DurationSeconds,
            LatencyPercentiles = Array.ConvertAll(Percentiles, p => Percentile(latencies, p)),
            LatencyMax = latencies.Length == 0 ? double.NaN : latencies[^1],
            LatencyMean = latencies.Length == 0 ? double.NaN : sum / latencies.Length,
            Series = series,
            Outcomes = Order(outcomes),
            Warnings = Order(warnings),
            ConnectionErrors = Order(connectionErrors),
            Sent = sent,
            Answered = answered,
            Unanswered = lostOnDrop + abandoned,
            UnansweredOnDroppedConnections = lostOnDrop,
            UnknownOrDuplicate = unknown,
            UnexpectedFrames = unexpected,
            Overdue = overdue,
            LateAnswers = late,
            ConnectSeconds = connectSeconds,
            TimedResults = timed,
            Verified = verified,
            Mismatches = mismatches,
            MeanBatchSize = timed == 0 ? double.NaN : timed / batches,
            MeanBatchComputeMs = timed == 0 ? double.NaN : batchComputeMs / batches,
            MeanQueueMs = timed == 0 ? double.NaN : queueMs / timed,
        };
    }

    /// <summary>Nearest-rank percentile of an ascending array; NaN when it is empty.</summary>
    public static double Percentile(double[] sorted, double p)
    {
        if (sorted.Length == 0)
        {
            return double.NaN;
        }

        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Length);
        return sorted[Math.Clamp(rank, 1, sorted.Length) - 1];
    }

    /// <summary>The fixed-width table; its table lines are Markdown.</summary>
    public string ToTable()
    {
        var o = Options;
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(inv, $"StreamInfer load generator — {o.Model} over {Options.ProtocolName(o.Protocol)}");
        if (!string.IsNullOrEmpty(o.Label))
        {
            sb.Append(inv, $" ({o.Label})");
        }

        sb.AppendLine();
        sb.AppendLine(inv, $"connections {o.Connections}, depth {o.Depth}, duration {Seconds(o.DurationSeconds)} s, warmup {Seconds(o.WarmupSeconds)} s, {o.InputName} {o.DType.Name} {o.ShapeText} ({o.ElementCount * o.DType.Size} bytes){(o.Chunk > 0 && o.SampleRate > 0 ? $" + sr int64 {o.SampleRate}" : string.Empty)}{(o.Sequences ? $", one sequence per slot{(o.SequenceChunks > 0 ? $" of {o.SequenceChunks} chunks" : string.Empty)}" : string.Empty)}{(o.Rate > 0 ? $", paced at {o.Rate} req/s" : ", closed loop")}");
        sb.AppendLine();
        sb.AppendLine("| requests | req/s     | p50 ms | p95 ms | p99 ms | max ms  |");
        sb.AppendLine("|---------:|----------:|-------:|-------:|-------:|--------:|");
        var p = LatencyPercentiles;
        sb.AppendLine(inv, $"| {Requests,8} | {RequestsPerSecond,9:F1} | {Ms(p[0]),6} | {Ms(p[1]),6} | {Ms(p[2]),6} | {Ms(LatencyMax),7} |");
        sb.AppendLine();
        sb.AppendLine("outcomes: " + Counts(Outcomes));
        sb.AppendLine("warnings: " + Counts(Warnings) + (Warnings.Count > 0 ? " (whole run)" : string.Empty));
        sb.AppendLine("connection-level errors: " + Counts(ConnectionErrors) + (ConnectionErrors.Count > 0 ? " (whole run)" : string.Empty));
        sb.AppendLine(inv, $"connected {ConnectionsOpened} of {o.Connections} in {ConnectSeconds:F2} s, failed to connect: {ConnectFailures}, dropped during the run: {ConnectionsDropped}");
        foreach (var (message, count) in ConnectErrors.OrderByDescending(e => e.Value).Take(3))
        {
            sb.AppendLine(inv, $"  connect error ×{count}: {message}");
        }

        foreach (var (reason, count) in DropReasons.OrderByDescending(e => e.Value).Take(3))
        {
            sb.AppendLine(inv, $"  dropped ×{count}: {reason}");
        }

        sb.AppendLine(inv, $"sent {Sent}, answered {Answered} (warm-up included), mean latency {Ms(LatencyMean)} ms");
        sb.AppendLine("answers by the second they arrived in, results/errors: " + string.Join(' ', Series.Select(s => string.Create(inv, $"{s.ResultsEnded}/{s.ErrorsEnded}"))));
        sb.AppendLine("connections without an answer, by second: " + string.Join(' ', Series.Select(s => s.SilentConnections.ToString(inv))));
        if (TimedResults > 0)
        {
            sb.AppendLine(inv, $"server timing: mean batch size {MeanBatchSize:F2}, mean compute {Ms(MeanBatchComputeMs)} ms per batch, mean queue {Ms(MeanQueueMs)} ms per request ({TimedResults} results)");
        }

        if (Overdue > 0)
        {
            sb.AppendLine(inv, $"overdue (slot moved on after {Options.AnswerTimeout.TotalSeconds:0} s without an answer): {Overdue}, answered late: {LateAnswers}");
        }

        if (o.VerifyEvery > 0)
        {
            sb.AppendLine(inv, $"verified (each connection's first answer and every {o.VerifyEvery}-th after it return the sent bytes): {Verified} checked, {Mismatches} mismatches");
        }

        if (UnexpectedFrames > 0)
        {
            sb.AppendLine(inv, $"unexpected frames: {UnexpectedFrames}");
        }

        sb.Append(inv, $"unanswered: {Unanswered}");
        if (UnansweredOnDroppedConnections > 0)
        {
            sb.Append(inv, $" ({UnansweredOnDroppedConnections} on dropped connections)");
        }

        sb.AppendLine(inv, $", unknown/duplicate answers: {UnknownOrDuplicate}");
        return sb.ToString();
    }

    public void WriteJson(string path)
    {
        using var stream = File.Create(path);
        WriteJson(stream);
        stream.Write("\n"u8);
    }

    private void WriteJson(Stream stream)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        var o = Options;
        w.WriteStartObject();
        if (o.Label is null)
        {
            w.WriteNull("label");
        }
        else
        {
            w.WriteString("label", o.Label);
        }

        w.WriteString("url", o.Url.ToString());
        w.WriteString("model", o.Model);
        w.WriteString("protocol", Options.ProtocolName(o.Protocol));
        w.WriteString("input", o.InputName);
        w.WriteString("dtype", o.DType.Name);
        w.WriteStartArray("shape");
        foreach (var d in o.Shape)
        {
            w.WriteNumberValue(d);
        }

        w.WriteEndArray();
        w.WriteNumber("connections", o.Connections);
        w.WriteNumber("connections_opened", ConnectionsOpened);
        w.WriteNumber("connect_failures", ConnectFailures);
        w.WriteNumber("connections_dropped", ConnectionsDropped);
        w.WriteNumber("depth", o.Depth);
        w.WriteNumber("rate", o.Rate);
        w.WriteBoolean("sequences", o.Sequences);
        w.WriteNumber("sequence_chunks", o.SequenceChunks);
        w.WriteNumber("chunk", o.Chunk);
        w.WriteNumber("sample_rate", o.Chunk > 0 ? o.SampleRate : 0);
        w.WriteNumber("duration_s", o.DurationSeconds);
        w.WriteNumber("warmup_s", o.WarmupSeconds);
        w.WriteNumber("requests", Requests);
        w.WriteNumber("requests_per_s", Math.Round(RequestsPerSecond, 1));
        w.WriteStartObject("latency_ms");
        WriteMs(w, "p50", LatencyPercentiles[0]);
        WriteMs(w, "p95", LatencyPercentiles[1]);
        WriteMs(w, "p99", LatencyPercentiles[2]);
        WriteMs(w, "max", LatencyMax);
        WriteMs(w, "mean", LatencyMean);
        w.WriteEndObject();
        WriteCounts(w, "outcomes", Outcomes);
        WriteCounts(w, "warnings", Warnings);
        WriteCounts(w, "connection_errors", ConnectionErrors);
        w.WriteNumber("sent", Sent);
        w.WriteNumber("answered", Answered);
        w.WriteNumber("unanswered", Unanswered);
        w.WriteNumber("unanswered_on_dropped_connections", UnansweredOnDroppedConnections);
        w.WriteNumber("unknown_or_duplicate", UnknownOrDuplicate);
        w.WriteNumber("unexpected_frames", UnexpectedFrames);
        w.WriteNumber("overdue", Overdue);
        w.WriteNumber("late_answers", LateAnswers);
        w.WriteNumber("verified", Verified);
        w.WriteNumber("mismatches", Mismatches);
        w.WriteStartArray("series");
        foreach (var point in Series)
        {
            w.WriteStartObject();
            w.WriteNumber("second", point.Second);
            w.WriteNumber("requests", point.Requests);
            WriteMs(w, "p50_ms", point.P50);
            WriteMs(w, "p99_ms", point.P99);
            WriteMs(w, "max_ms", point.Max);
            w.WriteNumber("results_ended", point.ResultsEnded);
            w.WriteNumber("errors_ended", point.ErrorsEnded);
            w.WriteNumber("connections_without_answer", point.SilentConnections);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        if (TimedResults == 0)
        {
            w.WriteNull("timing");
        }
        else
        {
            w.WriteStartObject("timing");
            w.WriteNumber("results", TimedResults);
            w.WriteNumber("mean_batch_size", Math.Round(MeanBatchSize, 3));
            WriteMs(w, "mean_compute_ms_per_batch", MeanBatchComputeMs);
            WriteMs(w, "mean_queue_ms", MeanQueueMs);
            w.WriteEndObject();
        }

        w.WriteEndObject();
    }

    private static void Merge(Dictionary<string, long> into, Dictionary<string, long> from)
    {
        foreach (var (key, count) in from)
        {
            into[key] = into.GetValueOrDefault(key) + count;
        }
    }

    /// <summary><c>result</c> first, then the rest by name.</summary>
    private static KeyValuePair<string, long>[] Order(Dictionary<string, long> counts)
        => [.. counts.OrderBy(c => c.Key == "result" ? 0 : 1).ThenBy(c => c.Key, StringComparer.Ordinal)];

    private static string Counts(IReadOnlyList<KeyValuePair<string, long>> counts)
        => counts.Count == 0 ? "none" : string.Join(' ', counts.Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Key}={c.Value}")));

    private static string Ms(double ms) => double.IsNaN(ms) ? "-" : ms.ToString(ms >= 100 ? "F1" : "F3", CultureInfo.InvariantCulture);

    private static string Seconds(double s) => s.ToString("0.###", CultureInfo.InvariantCulture);

    private static void WriteMs(Utf8JsonWriter w, string name, double ms)
    {
        if (double.IsNaN(ms))
        {
            w.WriteNull(name);
        }
        else
        {
            w.WriteNumber(name, Math.Round(ms, 3));
        }
    }

    private static void WriteCounts(Utf8JsonWriter w, string name, IReadOnlyList<KeyValuePair<string, long>> counts)
    {
        w.WriteStartObject(name);
        foreach (var (key, count) in counts)
        {
            w.WriteNumber(key, count);
        }

        w.WriteEndObject();
    }
}

/// <summary>One second of the measured window: requests sent in it, and their latency p50, p99 and max in ms.</summary>
/// <summary>
/// One second of the measured window: the requests sent in it and their latencies, and the answers that arrived in it
/// (results and errors), whenever their requests were sent inside the window.
/// </summary>
internal sealed record SecondSummary(int Second, int Requests, double P50, double P99, double Max, int ResultsEnded, int ErrorsEnded, int SilentConnections);
