using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;

namespace StreamInfer.OnnxBench;

/// <summary>One batch size's measurement: runs, rows/s, per-run time in ms, and the process's CPU in % of one core.</summary>
internal sealed record BareResult(int BatchSize, long Runs, double Seconds, double RowsPerSecond, double MeanMs, double P50Ms, double P99Ms, double CpuPercent);

/// <summary>
/// Bare ONNX Runtime: one session with the grid's CPU session options, one thread calling <c>Run</c> back to back on
/// preallocated input and output <see cref="OrtValue"/>s, for each batch size in turn. No copies, no JSON, no grains:
/// the most the engine does on this machine, and so the ceiling the grid is measured against.
/// </summary>
internal sealed class BareBench
{
    public required string ModelPath { get; init; }

    public required IReadOnlyList<int> BatchSizes { get; init; }

    public double Seconds { get; init; } = 5;

    public double WarmupSeconds { get; init; } = 1;

    /// <summary>Intra-op threads; the grid's default is every core.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>ORT's <c>session.intra_op.allow_spinning</c>; the grid's default is off.</summary>
    public bool Spinning { get; init; }

    /// <summary>The grid's <c>DeviceRegistry.CreateSessionOptions</c> for the CPU device, with this run's threads and spinning.</summary>
    public SessionOptions CreateSessionOptions()
    {
        var so = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            InterOpNumThreads = 1,
            IntraOpNumThreads = Threads,
        };
        so.AddSessionConfigEntry("session.intra_op.allow_spinning", Spinning ? "1" : "0");
        return so;
    }

    /// <summary>An input of what the load generator sends: float32 values, or uint8 pixels for a model that takes them.</summary>
    private static OrtValue Input(Type elementType, long count, long[] shape)
    {
        if (elementType == typeof(byte))
        {
            var pixels = new byte[count];
            for (var i = 0; i < pixels.Length; i++)
            {
                pixels[i] = (byte)(i % 16);
            }

            return OrtValue.CreateTensorValueFromMemory(pixels, shape);
        }

        var input = new float[count];
        for (var i = 0; i < input.Length; i++)
        {
            input[i] = (i % 16) * 0.5f;
        }

        return OrtValue.CreateTensorValueFromMemory(input, shape);
    }

    public List<BareResult> Run(TextWriter progress)
    {
        using var so = CreateSessionOptions();
        using var session = new InferenceSession(ModelPath, so);
        if (session.InputNames.Count != 1 || session.OutputNames.Count != 1)
        {
            throw new InvalidOperationException($"expected a model with one input and one output; '{ModelPath}' has {session.InputNames.Count} and {session.OutputNames.Count}.");
        }

        var inputName = session.InputNames[0];
        var outputName = session.OutputNames[0];
        var inputRow = RowDims(session.InputMetadata[inputName], inputName);
        var outputRow = RowDims(session.OutputMetadata[outputName], outputName);
        using var runOptions = new RunOptions();
        var results = new List<BareResult>();
        foreach (var batch in BatchSizes)
        {
            var output = new float[batch * Product(outputRow)];
            using var inputValue = Input(session.InputMetadata[inputName].ElementType, batch * Product(inputRow), [batch, .. inputRow]);
            using var outputValue = OrtValue.CreateTensorValueFromMemory(output, [batch, .. outputRow]);
            string[] inputNames = [inputName];
            string[] outputNames = [outputName];
            OrtValue[] inputs = [inputValue];
            OrtValue[] outputs = [outputValue];

            var warmupEnd = Stopwatch.GetTimestamp() + (long)(WarmupSeconds * Stopwatch.Frequency);
            var warmupRuns = 0;
            while (warmupRuns < 3 || Stopwatch.GetTimestamp() < warmupEnd)
            {
                session.Run(runOptions, inputNames, inputs, outputNames, outputs);
                warmupRuns++;
            }

            var times = new List<double>(1 << 16);
            using var process = Process.GetCurrentProcess();
            var cpuBefore = process.TotalProcessorTime;
            var start = Stopwatch.GetTimestamp();
            var end = start + (long)(Seconds * Stopwatch.Frequency);
            var now = start;
            while (now < end)
            {
                var before = now;
                session.Run(runOptions, inputNames, inputs, outputNames, outputs);
                now = Stopwatch.GetTimestamp();
                times.Add((now - before) * 1000.0 / Stopwatch.Frequency);
            }

            var elapsed = (double)(now - start) / Stopwatch.Frequency;
            process.Refresh();
            var cpuPercent = (process.TotalProcessorTime - cpuBefore).TotalSeconds / elapsed * 100;
            times.Sort();
            var result = new BareResult(
                batch,
                times.Count,
                elapsed,
                batch * times.Count / elapsed,
                elapsed * 1000.0 / times.Count,
                Percentile(times, 50),
                Percentile(times, 99),
                cpuPercent);
            results.Add(result);
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"batch {batch,2}: {result.RowsPerSecond,10:F1} rows/s, {result.MeanMs:F3} ms/batch ({result.Runs} runs, CPU {result.CpuPercent:F0}% of one core)"));
        }

        return results;
    }

    public string ToTable(IReadOnlyList<BareResult> results)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(inv, $"bare ONNX Runtime {OrtEnv.Instance().GetVersionString()}: {ModelPath}");
        sb.AppendLine(inv, $"intra-op threads {Threads} of {Environment.ProcessorCount} cores, spinning {(Spinning ? "on" : "off")}, ORT_ENABLE_ALL, sequential; one thread calling Run, {Seconds:0.###} s per batch size after {WarmupSeconds:0.###} s warm-up");
        sb.AppendLine();
        sb.AppendLine("| batch | runs     | rows/s    | ms/batch | p50 ms | p99 ms | CPU %  |");
        sb.AppendLine("|------:|---------:|----------:|---------:|-------:|-------:|-------:|");
        foreach (var r in results)
        {
            sb.AppendLine(inv, $"| {r.BatchSize,5} | {r.Runs,8} | {r.RowsPerSecond,9:F1} | {r.MeanMs,8:F3} | {r.P50Ms,6:F3} | {r.P99Ms,6:F3} | {r.CpuPercent,6:F0} |");
        }

        if (Best(results) is { } best)
        {
            sb.AppendLine();
            sb.AppendLine(inv, $"best: {best.RowsPerSecond:F1} rows/s at batch {best.BatchSize}");
        }

        return sb.ToString();
    }

    public void WriteJson(string path, IReadOnlyList<BareResult> results)
    {
        using var stream = File.Create(path);
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("model", ModelPath);
            w.WriteString("onnxruntime", OrtEnv.Instance().GetVersionString());
            w.WriteNumber("cores", Environment.ProcessorCount);
            w.WriteNumber("intra_op_threads", Threads);
            w.WriteBoolean("spinning", Spinning);
            w.WriteNumber("seconds_per_batch_size", Seconds);
            w.WriteNumber("warmup_s", WarmupSeconds);
            w.WriteStartArray("results");
            foreach (var r in results)
            {
                w.WriteStartObject();
                WriteResult(w, r);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            if (Best(results) is { } best)
            {
                w.WriteStartObject("best");
                WriteResult(w, best);
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        stream.Write("\n"u8);
    }

    public static BareResult? Best(IReadOnlyList<BareResult> results)
        => results.Count == 0 ? null : results.MaxBy(r => r.RowsPerSecond);

    private static void WriteResult(Utf8JsonWriter w, BareResult r)
    {
        w.WriteNumber("batch_size", r.BatchSize);
        w.WriteNumber("runs", r.Runs);
        w.WriteNumber("seconds", Math.Round(r.Seconds, 3));
        w.WriteNumber("rows_per_s", Math.Round(r.RowsPerSecond, 1));
        w.WriteNumber("ms_per_batch", Math.Round(r.MeanMs, 4));
        w.WriteNumber("p50_ms", Math.Round(r.P50Ms, 4));
        w.WriteNumber("p99_ms", Math.Round(r.P99Ms, 4));
        w.WriteNumber("cpu_percent", Math.Round(r.CpuPercent, 1));
    }

    /// <summary>The dimensions after the batch axis, which must all be fixed.</summary>
    private static long[] RowDims(NodeMetadata metadata, string name)
    {
        var dims = metadata.Dimensions;
        if (dims.Length < 2 || dims[1..].Any(d => d < 1))
        {
            throw new InvalidOperationException($"'{name}' must be [batch, fixed dims...]; its shape is [{string.Join(",", dims)}].");
        }

        return [.. dims[1..].Select(d => (long)d)];
    }

    private static int Product(long[] dims)
    {
        long n = 1;
        foreach (var d in dims)
        {
            n *= d;
        }

        return checked((int)n);
    }

    private static double Percentile(List<double> sorted, double p)
    {
        if (sorted.Count == 0)
        {
            return double.NaN;
        }

        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Count);
        return sorted[Math.Clamp(rank, 1, sorted.Count) - 1];
    }
}
