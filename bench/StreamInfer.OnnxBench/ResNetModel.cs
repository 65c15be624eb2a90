using System.Globalization;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Onnx;

namespace StreamInfer.OnnxBench;

/// <summary>
/// The image benchmark's model, <c>resnet</c>: a small ResNet. <c>image</c> float32 (or uint8 pixels, scaled in the
/// graph) [batch, 3, size, size] → a 7×7
/// stride-2 convolution stem to <see cref="Width"/> channels, Relu, 3×3 stride-2 max pool → two residual blocks
/// (Conv 3×3 + Relu + Conv 3×3 + Add + Relu) → two stages that halve the resolution and double the channels (a
/// stride-2 block whose shortcut is a 1×1 stride-2 convolution) → global average pool → Flatten → Gemm →
/// <c>logits</c> float32 [batch, 1000]. Weights are pseudo-random from a fixed seed (He-uniform, so activations keep
/// their scale), so every run of <c>generate-image</c> writes the same bytes. Batch normalization is taken as folded
/// into the convolutions' biases, as inference exports do.
/// </summary>
internal static class ResNetModel
{
    public const string DefaultName = "resnet";
    public const int DefaultSize = 224;
    public const int Classes = 1000;
    public const int Width = 32;
    public const int DefaultMaxBatchSize = 32;

    private const ulong Seed = 0x5EED_1A6E_2026UL;

    /// <summary>Writes <c>&lt;repository&gt;/&lt;name&gt;/config.json</c> and <c>&lt;repository&gt;/&lt;name&gt;/1/model.onnx</c>.</summary>
    /// <returns>The model file's path.</returns>
    /// <param name="repository">The repository folder.</param>
    /// <param name="name">The model's name (its folder).</param>
    /// <param name="size">The image's side.</param>
    /// <param name="maxBatchSize">The config's <c>max_batch_size</c>.</param>
    /// <param name="uint8Pixels">The image comes as uint8 pixels, scaled to [0, 1] in the graph (a quarter of FP32's bytes
    /// on the wire, as image services commonly take them); otherwise as float32.</param>
    public static string Write(string repository, string name, int size, int maxBatchSize, bool uint8Pixels = false)
    {
        var random = new SplitMix64(Seed);
        var g = new OnnxGraphBuilder(name);
        g.Input("image", uint8Pixels ? TensorElementType.UInt8 : TensorElementType.Float32, "batch", 3L, (long)size, (long)size);
        var pixels = uint8Pixels
            ? g.Node("Mul", [g.Node("Cast", ["image"], null, ("to", 1L)), g.Constant("inv255", [1f / 255], 1)])
            : "image";
        var x = Relu(g, Conv(g, random, pixels, 3, Width, kernel: 7, stride: 2));
        x = g.Node("MaxPool", [x], null, ("kernel_shape", new long[] { 3, 3 }), ("strides", new long[] { 2, 2 }), ("pads", new long[] { 1, 1, 1, 1 }));
        x = Block(g, random, x, Width, Width, stride: 1);
        x = Block(g, random, x, Width, Width, stride: 1);
        x = Block(g, random, x, Width, Width * 2, stride: 2);
        x = Block(g, random, x, Width * 2, Width * 4, stride: 2);
        var pooled = g.Node("Flatten", [g.Node("GlobalAveragePool", [x])], null, ("axis", 1L));
        var w = g.RawConstant("fc_w", Uniform(random, Width * 4 * Classes, Width * 4), Width * 4, Classes);
        var b = g.RawConstant("fc_b", new float[Classes], Classes);
        g.Node("Gemm", [pooled, w, b], "logits");
        g.Output("logits", TensorElementType.Float32, "batch", (long)Classes);

        var modelPath = Path.Combine(repository, name, "1", "model.onnx");
        g.Save(modelPath);
        File.WriteAllText(
            Path.Combine(repository, name, "config.json"),
            string.Create(CultureInfo.InvariantCulture, $$"""{ "kind": "tensor", "max_batch_size": {{maxBatchSize}}, "max_wait_ms": 0 }""") + "\n");
        return modelPath;
    }

    /// <summary>Multiply-adds per image, for the report.</summary>
    public static long MultiplyAddsPerImage(int size)
    {
        long Conv(int cin, int cout, int kernel, int outSize) => (long)cin * cout * kernel * kernel * outSize * outSize;
        var s1 = (size + 1) / 2;      // after the stem
        var s2 = (s1 + 1) / 2;        // after the max pool
        var s3 = (s2 + 1) / 2;
        var s4 = (s3 + 1) / 2;
        return Conv(3, Width, 7, s1)
            + (4 * Conv(Width, Width, 3, s2))
            + Conv(Width, Width * 2, 3, s3) + Conv(Width * 2, Width * 2, 3, s3) + Conv(Width, Width * 2, 1, s3)
            + Conv(Width * 2, Width * 4, 3, s4) + Conv(Width * 4, Width * 4, 3, s4) + Conv(Width * 2, Width * 4, 1, s4)
            + ((long)Width * 4 * Classes);
    }

    /// <summary>Conv 3×3 (stride) + Relu + Conv 3×3 + the shortcut (identity, or 1×1 stride-2 Conv) + Add + Relu.</summary>
    private static string Block(OnnxGraphBuilder g, SplitMix64 random, string x, int cin, int cout, int stride)
    {
        var h = Relu(g, Conv(g, random, x, cin, cout, kernel: 3, stride: stride));
        h = Conv(g, random, h, cout, cout, kernel: 3, stride: 1);
        var shortcut = stride == 1 && cin == cout ? x : Conv(g, random, x, cin, cout, kernel: 1, stride: stride);
        return Relu(g, g.Node("Add", [h, shortcut]));
    }

    private static string Conv(OnnxGraphBuilder g, SplitMix64 random, string x, int cin, int cout, int kernel, int stride)
    {
        var fanIn = cin * kernel * kernel;
        var w = g.RawConstant(g.FreshName("conv_w"), Uniform(random, cout * fanIn, fanIn), cout, cin, kernel, kernel);
        var b = g.RawConstant(g.FreshName("conv_b"), Uniform(random, cout, fanIn, 0.1), cout);
        var pad = (long)(kernel / 2);
        return g.Node(
            "Conv",
            [x, w, b],
            null,
            ("kernel_shape", new long[] { kernel, kernel }),
            ("strides", new long[] { stride, stride }),
            ("pads", new long[] { pad, pad, pad, pad }));
    }

    private static string Relu(OnnxGraphBuilder g, string x) => g.Node("Relu", [x]);

    /// <summary>He-uniform: ±sqrt(6 / fanIn), times <paramref name="gain"/>.</summary>
    private static float[] Uniform(SplitMix64 random, int count, int fanIn, double gain = 1)
    {
        var scale = gain * Math.Sqrt(6.0 / fanIn);
        var values = new float[count];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (float)(((random.NextDouble() * 2) - 1) * scale);
        }

        return values;
    }
}
