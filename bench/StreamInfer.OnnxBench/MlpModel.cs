using System.Globalization;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Onnx;

namespace StreamInfer.OnnxBench;

/// <summary>
/// The benchmark's test model, <c>mlp</c>: <c>x</c> float32 [batch, input] → MatMul [input, hidden] → Add bias → Relu →
/// MatMul [hidden, hidden] → Relu → MatMul [hidden, output] → <c>y</c> float32 [batch, output]. Weights are
/// pseudo-random from a fixed seed, so every run of <c>generate</c> writes the same bytes.
/// </summary>
internal static class MlpModel
{
    public const string DefaultName = "mlp";
    public const int DefaultInput = 256;
    /// <summary>
    /// 2560 rather than 512: at 512 a batch is mostly ONNX Runtime's per-call overhead; at 2560 (7.4 M multiply-adds per
    /// row) compute dominates, a model the grid's overhead can be weighed against (docs/decisions.md D5).
    /// </summary>
    public const int DefaultHidden = 2560;
    public const int DefaultOutput = 64;
    public const int DefaultMaxBatchSize = 32;

    private const ulong Seed = 0x5EED_0F_0411_2026UL;

    /// <summary>Writes <c>&lt;repository&gt;/&lt;name&gt;/config.json</c> and <c>&lt;repository&gt;/&lt;name&gt;/1/model.onnx</c>.</summary>
    /// <returns>The model file's path.</returns>
    public static string Write(string repository, string name, int input, int hidden, int output, int maxBatchSize)
    {
        var random = new SplitMix64(Seed);
        var g = new OnnxGraphBuilder(name);
        g.Input("x", TensorElementType.Float32, "batch", (long)input);
        var w1 = g.Constant("w1", Weights(random, input, hidden), input, hidden);
        var b1 = g.Constant("b1", Weights(random, 1, hidden), hidden);
        var w2 = g.Constant("w2", Weights(random, hidden, hidden), hidden, hidden);
        var w3 = g.Constant("w3", Weights(random, hidden, output), hidden, output);
        var h1 = g.Node("Relu", [g.Node("Add", [g.Node("MatMul", ["x", w1]), b1])]);
        var h2 = g.Node("Relu", [g.Node("MatMul", [h1, w2])]);
        g.Node("MatMul", [h2, w3], "y");
        g.Output("y", TensorElementType.Float32, "batch", (long)output);

        var modelPath = Path.Combine(repository, name, "1", "model.onnx");
        g.Save(modelPath);
        File.WriteAllText(
            Path.Combine(repository, name, "config.json"),
            string.Create(CultureInfo.InvariantCulture, $$"""{ "kind": "tensor", "max_batch_size": {{maxBatchSize}}, "max_wait_ms": 0 }""") + "\n");
        return modelPath;
    }

    /// <summary>Multiply-adds per row, for the report.</summary>
    public static long MultiplyAddsPerRow(int input, int hidden, int output)
        => ((long)input * hidden) + ((long)hidden * hidden) + ((long)hidden * output);

    /// <summary>Uniform in ±1/sqrt(fanIn), so activations keep their scale through the layers.</summary>
    private static float[] Weights(SplitMix64 random, int fanIn, int fanOut)
    {
        var scale = 1.0 / Math.Sqrt(fanIn);
        var values = new float[fanIn * fanOut];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (float)(((random.NextDouble() * 2) - 1) * scale);
        }

        return values;
    }
}
