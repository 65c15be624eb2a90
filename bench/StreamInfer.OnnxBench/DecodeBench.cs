using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.OnnxBench;

/// <summary>
/// The bare decoder engine on tiny-lm, in the shape the grid serves 64 closed-loop streams: a round prefills every
/// sequence in one step, then decodes them together, one step per token, until all have finished. No grains, no
/// scheduler, no network: the grid's ceiling for the same workload.
/// </summary>
internal sealed class DecodeBench
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<double> _handoffs = new();

    /// <summary>Sequences per round (the grid's concurrent streams).</summary>
    public int Sequences { get; init; } = 64;

    /// <summary>Prompt length in bytes (tiny-lm's tokenizer is one token per byte).</summary>
    public int PromptTokens { get; init; } = 16;

    /// <summary>Tokens each sequence generates, greedy (fewer if the model emits end-of-text first).</summary>
    public int MaxTokens { get; init; } = 128;

    public double Seconds { get; init; } = 5;

    public double WarmupSeconds { get; init; } = 1;

    public int Threads { get; init; } = Environment.ProcessorCount;

    public bool Spinning { get; init; }

    /// <summary>The CUDA device to run on, as the grid does with <c>Devices:Gpus</c>; null for the CPU.</summary>
    public int? Cuda { get; init; }

    /// <summary>The prompt both this bench and the grid client send: printable bytes, the same every time.</summary>
    public static string Prompt(int length)
    {
        const string Text = "The quick brown fox jumps over the lazy dog. ";
        var chars = new char[length];
        for (var i = 0; i < length; i++)
        {
            chars[i] = Text[i % Text.Length];
        }

        return new string(chars);
    }

    /// <summary>Runs rounds for the warm-up, then for <see cref="Seconds"/>, and writes the result lines.</summary>
    public int Run(TextWriter output, TextWriter progress)
    {
        var repo = Directory.CreateTempSubdirectory("streaminfer-decode-bench-");
        try
        {
            TinyLm.Write(Path.Combine(repo.FullName, TinyLm.Name));
            var (models, scanErrors) = ModelRepositoryScanner.Scan(repo.FullName, new HashSet<string>());
            if (scanErrors.Count > 0 || models.Count != 1)
            {
                progress.WriteLine("tiny-lm did not scan: " + string.Join("; ", scanErrors.Select(e => e.ToString())));
                return 1;
            }

            // The grid's DeviceRegistry.CreateSessionOptions for the device.
            using var so = new SessionOptions
            {
                GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
                ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
                InterOpNumThreads = 1,
                IntraOpNumThreads = Cuda is null ? Threads : 1,
            };
            so.AddSessionConfigEntry("session.intra_op.allow_spinning", Spinning ? "1" : "0");
            if (Cuda is { } gpu)
            {
                try
                {
                    so.AppendExecutionProvider_CUDA(gpu);
                }
                catch (OnnxRuntimeException ex)
                {
                    progress.WriteLine($"the CUDA execution provider could not start on GPU {gpu}: {ex.Message.Trim()}");
                    return 1;
                }
            }

            var loadErrors = new List<ModelLoadError>();
            using var model = OnnxDecoderModel.Load(models[0], so, loadErrors);
            if (model is null)
            {
                progress.WriteLine("tiny-lm did not load: " + string.Join("; ", loadErrors.Select(e => e.ToString())));
                return 1;
            }

            var request = new InferRequest(
                "bench", TinyLm.Name, ImmutableArray<NamedTensor>.Empty, Prompt(PromptTokens), null, "bench",
                Generation: new GenerationOptions(MaxTokens: MaxTokens, Temperature: 0));

            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"warm-up {WarmupSeconds:F0} s"));
            RunFor(model, request, WarmupSeconds, new List<double>(), new List<double>(), out _);
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"measuring {Seconds:F0} s: {Sequences} sequences x {PromptTokens} prompt tokens -> {MaxTokens} tokens"));
            var steps = new List<double>();
            var prefills = new List<double>();
            _handoffs.Clear();
            var clock = Stopwatch.StartNew();
            var tokens = RunFor(model, request, Seconds, steps, prefills, out var rounds);
            var wall = clock.Elapsed.TotalSeconds;
            steps.Sort();
            prefills.Sort();
            var handoffs = _handoffs.ToList();
            handoffs.Sort();
            output.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"bare: device={(Cuda is { } id ? $"cuda{id}" : "cpu")} tokens_per_s={tokens / wall:F0} rounds={rounds} tokens={tokens} step_ms={steps.Average():F3} step_p50={Percentile(steps, 50):F3} step_p99={Percentile(steps, 99):F3} prefill_p50={Percentile(prefills, 50):F3} prefill_p99={Percentile(prefills, 99):F3} handoff_p50={Percentile(handoffs, 50):F3} handoff_p99={Percentile(handoffs, 99):F3}"));
            return 0;
        }
        finally
        {
            repo.Delete(recursive: true);
        }
    }

    /// <summary>Whole rounds until <paramref name="seconds"/> have passed (a round started is finished, so the
    /// tokens/s counts no half round). Returns the tokens generated.</summary>
    private long RunFor(OnnxDecoderModel model, InferRequest request, double seconds, List<double> steps, List<double> prefills, out int rounds)
    {
        long tokens = 0;
        rounds = 0;
        var deadline = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        do
        {
            tokens += Round(model, request, steps, prefills);
            rounds++;
        }
        while (Stopwatch.GetTimestamp() < deadline);
        return tokens;
    }

    private long Round(OnnxDecoderModel model, InferRequest request, List<double> steps, List<double> prefills)
    {
        var prefill = new List<(DecodeSequence, int)>(Sequences);
        for (var i = 0; i < Sequences; i++)
        {
            var (seq, error) = model.Prepare(request);
            if (seq is null)
            {
                throw new InvalidOperationException("tiny-lm refused the request: " + error?.Message);
            }

            prefill.Add((seq, seq.Prompt.Length));
        }

        long tokens = 0;
        var start = Stopwatch.GetTimestamp();
        tokens += Count(model.Step(prefill, []));
        prefills.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        var live = prefill.Select(p => p.Item1).Where(s => !s.Finished).ToList();
        while (live.Count > 0)
        {
            start = Stopwatch.GetTimestamp();
            tokens += Count(model.Step([], live));
            var ended = Stopwatch.GetTimestamp();
            steps.Add(Stopwatch.GetElapsedTime(start, ended).TotalMilliseconds);
            // The floor under the grid's hand-off of a step to the Orleans scheduler: the same hand-off to an idle thread
            // pool, with nothing else running but the model's next step.
            ThreadPool.UnsafeQueueUserWorkItem(static state => state.Handoffs.Enqueue(Stopwatch.GetElapsedTime(state.Ended).TotalMilliseconds), (Handoffs: _handoffs, Ended: ended), preferLocal: false);
            // Finished sequences leave the batch, as they leave the grid's.
            live.RemoveAll(s => s.Finished);
        }

        foreach (var (seq, _) in prefill)
        {
            seq.Release();
        }

        return tokens;
    }

    private static int Count(List<StepOutcome> outcomes) => outcomes.Count(o => o.Token is not null);

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
