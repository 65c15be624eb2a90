using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Onnx;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>
/// <c>classifier</c>: a small convolutional classifier in the shape of a ResNet, for end-to-end tests with real image-sized
/// tensors. <c>image</c> float32 [batch, 3, 224, 224] → a 4×4 stride-4 conv stem to 8 channels, ReLU → one residual
/// block (3×3 conv, ReLU, 3×3 conv, add, ReLU) → global average pool → a dense layer → <c>logits</c> float32
/// [batch, 10]. Weights are pseudo-random from a fixed seed; the compute is kept small for a 2-core test machine.
/// </summary>
public static class ImageClassifier
{
    public const string ModelName = "classifier";
    public const string Input = "image";
    public const string Output = "logits";
    public const int Size = 224;
    public const int Classes = 10;

    private const int Channels = 8;

    /// <summary>Writes <c>&lt;repository&gt;/&lt;name&gt;/config.json</c> and its <c>1/model.onnx</c>; returns the model file's path.</summary>
    public static string Write(string repository, string name = ModelName, int maxBatchSize = 8)
    {
        var random = new SplitMix64(0x1A4A6E);
        var g = new OnnxGraphBuilder(name);
        g.Input(Input, TensorElementType.Float32, "batch", 3L, (long)Size, (long)Size);
        var stem = g.Node("Relu", [g.Node("Conv", [Input, Weights(g, random, "stem_w", Channels, 3, 4), Weights(g, random, "stem_b", Channels)], null, ("strides", new long[] { 4, 4 }))]);
        var conv1 = g.Node("Relu", [Conv3(g, random, stem, "block_1")]);
        var conv2 = Conv3(g, random, conv1, "block_2");
        var block = g.Node("Relu", [g.Node("Add", [stem, conv2])]);
        var pooled = g.Node("Flatten", [g.Node("GlobalAveragePool", [block])], null, ("axis", 1L));
        g.Node("Gemm", [pooled, Weights(g, random, "fc_w", Channels, Classes), Weights(g, random, "fc_b", Classes)], Output);
        g.Output(Output, TensorElementType.Float32, "batch", (long)Classes);
        var path = Path.Combine(repository, name, "1", "model.onnx");
        g.Save(path);
        File.WriteAllText(Path.Combine(repository, name, "config.json"), $$"""{ "kind": "tensor", "max_batch_size": {{maxBatchSize}} }""");
        return path;
    }

    /// <summary>A batch of <paramref name="images"/> pseudo-random images, [images, 3, 224, 224], row-major.</summary>
    public static float[] Images(int images, int seed)
    {
        var random = new Random(seed);
        var values = new float[images * 3 * Size * Size];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (float)random.NextDouble();
        }

        return values;
    }

    private static string Conv3(OnnxGraphBuilder g, SplitMix64 random, string input, string name)
        => g.Node("Conv", [input, Weights(g, random, $"{name}_w", Channels, Channels, 3), Weights(g, random, $"{name}_b", Channels)], null, ("pads", new long[] { 1, 1, 1, 1 }));

    /// <summary>A conv kernel (given as out, in, k: [out, in, k, k]), a dense weight [in, out] or a bias [n], uniform in ±1/sqrt(fan-in).</summary>
    private static string Weights(OnnxGraphBuilder g, SplitMix64 random, string name, params long[] dims)
    {
        long[] shape = dims.Length == 3 ? [dims[0], dims[1], dims[2], dims[2]] : dims;
        var count = shape.Aggregate(1L, (a, b) => a * b);
        var fanIn = dims.Length == 3 ? dims[1] * dims[2] * dims[2] : dims[0];
        var scale = 1.0 / Math.Sqrt(fanIn);
        var values = new float[count];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (float)(((random.NextDouble() * 2) - 1) * scale);
        }

        return g.RawConstant(name, values, shape);
    }
}
