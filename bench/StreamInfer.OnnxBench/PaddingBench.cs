using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Onnx;

namespace StreamInfer.OnnxBench;

/// <summary>
/// Where cutting a padded batch pays: on a model with one dynamic axis (a per-position MLP, <c>x</c> float32
/// [batch, seq, 64] → 256 → <c>y</c> [batch, seq, 64], cost linear in positions), short requests of <see cref="Short"/>
/// positions with one long one, run once padded together and once as two runs (the short ones together, the long one
/// alone). Bare ONNX Runtime with the grid's CPU session options; the median of repeated runs.
/// </summary>
internal sealed class PaddingBench
{
    private const int Features = 64;
    private const int Hidden = 256;

    public int Threads { get; init; } = Environment.ProcessorCount;

    public double SecondsPerPoint { get; init; } = 0.2;

    /// <summary>Positions of each short request.</summary>
    public int Short { get; init; } = 16;

    public int Run(TextWriter output)
    {
        var g = new OnnxGraphBuilder("positions");
        var random = new SplitMix64(7);
        g.Input("x", TensorElementType.Float32, "batch", "seq", (long)Features);
        var w1 = g.Constant("w1", Weights(random, Features * Hidden), Features, Hidden);
        var w2 = g.Constant("w2", Weights(random, Hidden * Features), Hidden, Features);
        g.Node("MatMul", [g.Node("Relu", [g.Node("MatMul", ["x", w1])]), w2], "y");
        g.Output("y", TensorElementType.Float32, "batch", "seq", (long)Features);
        var file = Path.Combine(Path.GetTempPath(), $"padding-bench-{Environment.ProcessId}.onnx");
        g.Save(file);
        try
        {
            using var options = new BareBench { ModelPath = file, BatchSizes = [1], Threads = Threads }.CreateSessionOptions();
            using var session = new InferenceSession(file, options);
            using var runOptions = new RunOptions();
            double Time(long rows, long seq)
            {
                var data = new float[rows * seq * Features];
                using var x = OrtValue.CreateTensorValueFromMemory(data, [rows, seq, Features]);
                var times = new List<double>();
                var until = Stopwatch.GetTimestamp() + (long)(SecondsPerPoint * Stopwatch.Frequency);
                for (var i = 0; i < 3 || (Stopwatch.GetTimestamp() < until && times.Count < 2000); i++)
                {
                    var started = Stopwatch.GetTimestamp();
                    using var y = session.Run(runOptions, ["x"], [x], ["y"]);
                    if (i >= 1)
                    {
                        times.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                    }
                }

                times.Sort();
                return times[times.Count / 2];
            }

            var bytesPerPosition = Features * 4;
            var one = Time(1, 1);
            var many = Time(32, 1024);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"one position: {one:F3} ms; 32x1024 positions: {many:F3} ms ({many / (32 * 1024) * 1000:F3} us per position, {bytesPerPosition} input bytes each); threads {Threads}"));
            output.WriteLine();
            output.WriteLine("| requests | long | waste bytes | waste share | padded ms | split ms | split/padded |");
            output.WriteLine("|---|---|---|---|---|---|---|");
            foreach (var (shorts, longs) in new (int, int[])[] { (31, [16, 24, 32, 48, 64, 128, 256, 1024, 4096]), (3, [16, 24, 32, 64, 128, 512, 2048]), (1, [16, 32, 64, 128, 512]) })
            {
                foreach (var length in longs)
                {
                    var padded = Time(shorts + 1, length);
                    var split = Time(shorts, Short) + Time(1, length);
                    var useful = ((long)shorts * Short) + length;
                    var total = (long)(shorts + 1) * length;
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {shorts}x{Short} + 1 | {length} | {(total - useful) * bytesPerPosition} | {(double)(total - useful) / total:P0} | {padded:F3} | {split:F3} | {split / padded:F2} |"));
                }
            }

            return 0;
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static float[] Weights(SplitMix64 random, int count)
    {
        var values = new float[count];
        for (var i = 0; i < count; i++)
        {
            values[i] = (float)((random.NextDouble() * 0.2) - 0.1);
        }

        return values;
    }
}
