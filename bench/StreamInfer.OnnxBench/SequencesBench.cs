using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Stateful;

namespace StreamInfer.OnnxBench;

/// <summary>One batch size's measurement: chunks/s, and per batch the whole loop's time and ONNX Runtime's own.</summary>
internal sealed record SequencesResult(int BatchSize, int Sequences, long Batches, double Seconds, double ChunksPerSecond, double MeanMs, double P50Ms, double P99Ms, double RunMeanMs, double CpuPercent);

/// <summary>
/// Bare ONNX Runtime serving stateful sequences, the way a hand-written server would: a pool of sequences, each with
/// its own [2, 128] state and its audio chunks; each batch takes the next B sequences, gathers their chunks into
/// <c>input</c> and their states into <c>state</c> (row b of axis 1), runs, and scatters <c>stateN</c> back. One thread,
/// the grid's CPU session options, preallocated tensors: the ceiling the grid's sequence batching is measured against.
/// </summary>
internal sealed class SequencesBench
{
    /// <summary>Distinct chunks per sequence, used in turn (enough that a batch's rows differ).</summary>
    private const int ChunksPerSequence = 8;

    /// <summary>The model file; null writes the built-in vad-lite to a temporary folder. vad-lite is first checked against its reference.</summary>
    public string? ModelPath { get; init; }

    public required IReadOnlyList<int> BatchSizes { get; init; }

    /// <summary>Sequences in the pool; each batch size uses at least its own size. Default: the batch size.</summary>
    public int PoolSize { get; init; }

    public int ChunkSamples { get; init; } = VadLite.ChunkSamples;

    public long SampleRate { get; init; } = VadLite.ReferenceSampleRate;

    public double Seconds { get; init; } = 5;

    public double WarmupSeconds { get; init; } = 1;

    public int Threads { get; init; } = Environment.ProcessorCount;

    public bool Spinning { get; init; }

    public List<SequencesResult> Run(TextWriter progress)
    {
        var temp = ModelPath is null ? Directory.CreateTempSubdirectory("streaminfer-sequences-bench-") : null;
        try
        {
            var path = ModelPath ?? Path.Combine(temp!.FullName, "1", "model.onnx");
            if (temp is not null)
            {
                VadLite.Write(temp.FullName);
            }

            using var so = new BareBench { ModelPath = path, BatchSizes = BatchSizes, Threads = Threads, Spinning = Spinning }.CreateSessionOptions();
            using var session = new InferenceSession(path, so);
            string[] expected = ["input", "state", "sr"];
            if (!session.InputNames.SequenceEqual(expected) || !session.OutputNames.SequenceEqual(["output", "stateN"]))
            {
                throw new InvalidOperationException($"expected silero VAD v5's signature (input, state, sr -> output, stateN); '{path}' has ({string.Join(", ", session.InputNames)}) -> ({string.Join(", ", session.OutputNames)}).");
            }

            // vad-lite (built in, or written by generate-vad) must agree with its reference, so the loop is known right.
            if (session.ModelMetadata.GraphName == "vad_lite")
            {
                CheckAgainstReference(session);
            }

            var results = new List<SequencesResult>();
            foreach (var batch in BatchSizes)
            {
                var result = Measure(session, batch, Math.Max(batch, PoolSize));
                results.Add(result);
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"batch {batch,3}: {result.ChunksPerSecond,10:F0} chunks/s, {result.MeanMs:F3} ms/batch ({result.RunMeanMs:F3} in Run), {result.Batches} batches, CPU {result.CpuPercent:F0}% of one core"));
            }

            return results;
        }
        finally
        {
            temp?.Delete(recursive: true);
        }
    }

    public string ToTable(IReadOnlyList<SequencesResult> results)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(inv, $"bare ONNX Runtime {OrtEnv.Instance().GetVersionString()}, sequences: {ModelPath ?? VadLite.Name + " (built in)"}, chunks of {ChunkSamples} samples at {SampleRate} Hz");
        sb.AppendLine(inv, $"intra-op threads {Threads} of {Environment.ProcessorCount} cores, spinning {(Spinning ? "on" : "off")}; one thread: gather B states and chunks, Run, scatter stateN; {Seconds:0.###} s per batch size after {WarmupSeconds:0.###} s warm-up");
        sb.AppendLine();
        sb.AppendLine("| batch | sequences | batches  | chunks/s   | ms/batch | p50 ms | p99 ms | Run ms | CPU %  |");
        sb.AppendLine("|------:|----------:|---------:|-----------:|---------:|-------:|-------:|-------:|-------:|");
        foreach (var r in results)
        {
            sb.AppendLine(inv, $"| {r.BatchSize,5} | {r.Sequences,9} | {r.Batches,8} | {r.ChunksPerSecond,10:F0} | {r.MeanMs,8:F3} | {r.P50Ms,6:F3} | {r.P99Ms,6:F3} | {r.RunMeanMs,6:F3} | {r.CpuPercent,6:F0} |");
        }

        if (results.Count > 0)
        {
            var best = results.MaxBy(r => r.ChunksPerSecond)!;
            sb.AppendLine();
            sb.AppendLine(inv, $"best: {best.ChunksPerSecond:F0} chunks/s at batch {best.BatchSize}");
        }

        return sb.ToString();
    }

    private SequencesResult Measure(InferenceSession session, int batch, int poolSize)
    {
        var pool = new SequencePool(poolSize, ChunkSamples);
        using var loop = new BatchLoop(session, batch, ChunkSamples, SampleRate);
        var warmupEnd = Stopwatch.GetTimestamp() + (long)(WarmupSeconds * Stopwatch.Frequency);
        var next = 0;
        for (var runs = 0; runs < 3 || Stopwatch.GetTimestamp() < warmupEnd; runs++)
        {
            loop.Step(pool, ref next, out _);
        }

        var times = new List<double>(1 << 16);
        double runMs = 0;
        using var process = Process.GetCurrentProcess();
        var cpuBefore = process.TotalProcessorTime;
        var start = Stopwatch.GetTimestamp();
        var end = start + (long)(Seconds * Stopwatch.Frequency);
        var now = start;
        while (now < end)
        {
            var before = now;
            loop.Step(pool, ref next, out var run);
            now = Stopwatch.GetTimestamp();
            times.Add((now - before) * 1000.0 / Stopwatch.Frequency);
            runMs += run;
        }

        var elapsed = (double)(now - start) / Stopwatch.Frequency;
        process.Refresh();
        var cpu = (process.TotalProcessorTime - cpuBefore).TotalSeconds / elapsed * 100;
        times.Sort();
        return new SequencesResult(batch, poolSize, times.Count, elapsed, batch * times.Count / elapsed, elapsed * 1000.0 / times.Count, Percentile(times, 50), Percentile(times, 99), runMs / times.Count, cpu);
    }

    /// <summary>Three batches of three sequences through the loop must give the reference's outputs and states exactly.</summary>
    private void CheckAgainstReference(InferenceSession session)
    {
        const int Sequences = 3;
        var pool = new SequencePool(Sequences, ChunkSamples);
        var references = Enumerable.Range(0, Sequences).Select(_ => new VadLiteReference()).ToArray();
        using var loop = new BatchLoop(session, Sequences, ChunkSamples, SampleRate);
        var next = 0;
        for (var round = 0; round < 3; round++)
        {
            var expected = references.Select((r, s) => r.Next(pool.Chunks[s][round % ChunksPerSequence], SampleRate)).ToArray();
            loop.Step(pool, ref next, out _);
            for (var s = 0; s < Sequences; s++)
            {
                if (loop.Output[s] != expected[s] || !pool.States[s].AsSpan().SequenceEqual(references[s].State))
                {
                    throw new InvalidOperationException($"the bare loop disagrees with {nameof(VadLiteReference)} at sequence {s}, chunk {round}: {loop.Output[s]} vs {expected[s]}.");
                }
            }
        }
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

    /// <summary>The sequences: each one's state, its chunks, and how many it has sent.</summary>
    private sealed class SequencePool
    {
        public SequencePool(int size, int samples)
        {
            States = [.. Enumerable.Range(0, size).Select(_ => new float[VadLite.StateSize])];
            Chunks = [.. Enumerable.Range(0, size).Select(s => Enumerable.Range(0, ChunksPerSequence).Select(k => VadLiteReference.Chunk(s, k, samples)).ToArray())];
            Sent = new int[size];
        }

        public float[][] States { get; }

        public float[][][] Chunks { get; }

        public int[] Sent { get; }
    }

    /// <summary>One batch size's tensors, preallocated, and the gather, run and scatter of one batch.</summary>
    private sealed class BatchLoop : IDisposable
    {
        private readonly InferenceSession _session;
        private readonly int _batch;
        private readonly int _samples;
        private readonly float[] _input;
        private readonly float[] _state;
        private readonly float[] _stateN;
        private readonly int[] _members;
        private readonly OrtValue[] _inputs;
        private readonly OrtValue[] _outputs;
        private readonly RunOptions _runOptions = new();
        private static readonly string[] InputNames = ["input", "state", "sr"];
        private static readonly string[] OutputNames = ["output", "stateN"];

        public BatchLoop(InferenceSession session, int batch, int samples, long sampleRate)
        {
            _session = session;
            _batch = batch;
            _samples = samples;
            _input = new float[batch * samples];
            _state = new float[VadLite.StateSize * batch];
            _stateN = new float[VadLite.StateSize * batch];
            Output = new float[batch];
            _members = new int[batch];
            _inputs =
            [
                OrtValue.CreateTensorValueFromMemory(_input, [batch, samples]),
                OrtValue.CreateTensorValueFromMemory(_state, [2, batch, VadLite.StateWidth]),
                OrtValue.CreateTensorValueFromMemory(new[] { sampleRate }, []),
            ];
            _outputs =
            [
                OrtValue.CreateTensorValueFromMemory(Output, [batch, 1]),
                OrtValue.CreateTensorValueFromMemory(_stateN, [2, batch, VadLite.StateWidth]),
            ];
        }

        public float[] Output { get; }

        /// <summary>Runs the next <c>batch</c> sequences of the pool (from <paramref name="next"/>, wrapping); <paramref name="runMs"/> is Run's own time.</summary>
        public void Step(SequencePool pool, ref int next, out double runMs)
        {
            const int W = VadLite.StateWidth;
            var size = pool.States.Length;
            for (var b = 0; b < _batch; b++)
            {
                var s = _members[b] = next;
                next = (next + 1) % size;
                pool.Chunks[s][pool.Sent[s]++ % ChunksPerSequence].CopyTo(_input.AsSpan(b * _samples));
                var state = pool.States[s];
                state.AsSpan(0, W).CopyTo(_state.AsSpan(b * W));
                state.AsSpan(W, W).CopyTo(_state.AsSpan((_batch + b) * W));
            }

            var start = Stopwatch.GetTimestamp();
            _session.Run(_runOptions, InputNames, _inputs, OutputNames, _outputs);
            runMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;

            for (var b = 0; b < _batch; b++)
            {
                var state = pool.States[_members[b]];
                _stateN.AsSpan(b * W, W).CopyTo(state);
                _stateN.AsSpan((_batch + b) * W, W).CopyTo(state.AsSpan(W));
            }
        }

        public void Dispose()
        {
            foreach (var value in _inputs.Concat(_outputs))
            {
                value.Dispose();
            }

            _runOptions.Dispose();
        }
    }
}
