using System.Globalization;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.Grains.Models.Stateful;

/// <summary>
/// The built-in <c>vad-lite</c>: a stateful stand-in for a voice-activity detector with exactly silero VAD v5's
/// signature, so that it is served with the same <c>config.json</c> as silero. Its arithmetic uses only operations that
/// IEEE 754 rounds one way (multiplications, additions, divisions, a maximum; no exp, no sum over many terms, whose
/// result depends on the kernel's order), so <see cref="VadLiteReference"/> reproduces every output and state bit for
/// bit, at any batch size.
/// </summary>
/// <remarks>
/// <para>Inputs: <c>input</c> float32 [batch, samples] (audio, one chunk per row); <c>state</c> float32
/// [2, batch, 128] (the batch on axis 1); <c>sr</c> int64 scalar (the sample rate). Outputs: <c>output</c> float32
/// [batch, 1]; <c>stateN</c> float32 [2, batch, 128], the next state.</para>
/// <para>Per row: the chunk's peak power <c>p = max(x²)</c> and its energy <c>e = p · (sr / 16000)</c>. Lane j of
/// state 0 is a running level with its own decay <c>a_j = 0.75 + j/512</c>:
/// <c>stateN[0][j] = a_j · state[0][j] + (0.25 − j/512) · e</c>. State 1 counts chunks:
/// <c>stateN[1][j] = state[1][j] + 1</c>. The output squashes lane 0's level into (0, 1):
/// <c>z = (stateN[0][0] − 0.01) · 400</c>, <c>output = z / (|z| + 1) · 0.5 + 0.5</c>, above 0.5 while the smoothed peak
/// power is above 0.01 (a peak amplitude of 0.1 at 16 kHz). A maximum ignores zero padding, so padded rows batch
/// unchanged.</para>
/// </remarks>
public static class VadLite
{
    /// <summary>The model's name in the repository.</summary>
    public const string Name = "vad-lite";

    /// <summary>The batch's symbolic dimension (axis 0 of <c>input</c> and <c>output</c>, axis 1 of the states).</summary>
    public const string BatchDim = "batch";

    /// <summary>The chunk's length axis.</summary>
    public const string SamplesDim = "samples";

    /// <summary>Lanes per state row.</summary>
    public const int StateWidth = 128;

    /// <summary>Values in one sequence's state: its two rows of <see cref="StateWidth"/>.</summary>
    public const int StateSize = 2 * StateWidth;

    /// <summary>The sample rate the energy is scaled to (a chunk at this rate counts as it is).</summary>
    public const long ReferenceSampleRate = 16000;

    /// <summary>Samples per chunk at 16 kHz that silero VAD v5 takes (32 ms).</summary>
    public const int ChunkSamples = 512;

    /// <summary>The default <c>max_batch_size</c> written into its config.</summary>
    public const int DefaultMaxBatchSize = 64;

    /// <summary>The smoothed peak power at which the output is 0.5.</summary>
    public const float Threshold = 0.01f;

    /// <summary>The slope of the output around the threshold.</summary>
    public const float Steepness = 400f;

    private const int Opset = 17;

    /// <summary>Lane j's decay, <c>0.75 + j/512</c>: exact in float32.</summary>
    public static float Decay(int lane) => 0.75f + (lane / 512f);

    /// <summary>Lane j's share of the new energy, <c>0.25 − j/512</c> = 1 − <see cref="Decay"/>: exact in float32.</summary>
    public static float Blend(int lane) => 0.25f - (lane / 512f);

    /// <summary>
    /// Writes <c>&lt;modelDirectory&gt;/config.json</c> and <c>&lt;modelDirectory&gt;/1/model.onnx</c>, the same bytes
    /// on every machine. <paramref name="ballast"/> &gt; 0 adds work that changes no value, for benchmarks that want a
    /// real model's cost per chunk: the level lanes times a fixed [128, ballast] matrix, its maximum times 0 added to
    /// the level (128 · ballast multiply-adds per chunk; 4096 gives half a million, the order of silero VAD v5's). The built-in has none.
    /// </summary>
    public static void Write(string modelDirectory, int maxBatchSize = DefaultMaxBatchSize, int ballast = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(ballast);
        Build(ballast).Save(Path.Combine(modelDirectory, "1", ModelRepositoryScanner.OnnxFileName));
        File.WriteAllText(Path.Combine(modelDirectory, ModelRepositoryScanner.ConfigFile), ConfigJson(maxBatchSize));
    }

    /// <summary>Writes the model as <c>&lt;repository&gt;/vad-lite</c> unless that folder exists (see <see cref="BuiltInModelFolder"/>).</summary>
    /// <returns>Whether it wrote the model.</returns>
    public static bool EnsureIn(string repository)
        => BuiltInModelFolder.EnsureIn(repository, Name, folder => Write(folder));

    /// <summary>Results in each sequence's window over <c>output</c> (128 ms of 32 ms chunks).</summary>
    public const int WindowSize = 4;

    /// <summary>The window's mean at which a sequence's speech starts (its <c>on</c> event).</summary>
    public const double WindowOn = 0.5;

    /// <summary>The window's mean below which a sequence's speech ends (its <c>off</c> event).</summary>
    public const double WindowOff = 0.35;

    /// <summary>
    /// The model's <c>config.json</c>: <c>state</c> and <c>stateN</c> batched on axis 1, <c>sr</c> shared by a batch,
    /// the state pair carried from one request of a sequence to the next (zeros at its start), and a window over
    /// <c>output</c> whose mean raises speech start and end events.
    /// </summary>
    public static string ConfigJson(int maxBatchSize = DefaultMaxBatchSize) => string.Create(
        CultureInfo.InvariantCulture,
        $$"""
        {
          "kind": "tensor",
          "max_batch_size": {{maxBatchSize}},
          "inputs": [{"name": "input"}, {"name": "state", "batch_axis": 1}, {"name": "sr", "shared": true}],
          "outputs": [{"name": "output"}, {"name": "stateN", "batch_axis": 1}],
          "sequence": {
            "state": [{"input": "state", "output": "stateN", "initial": 0.0}],
            "idle_timeout_ms": 60000,
            "max_sequences": 4096,
            "window": {"output": "output", "size": {{WindowSize}}, "on": {{WindowOn}}, "off": {{WindowOff}}}
          },
          "warmup_dims": {"{{SamplesDim}}": {{ChunkSamples}}}
        }

        """);

    /// <summary>The graph, not yet saved.</summary>
    internal static OnnxGraphBuilder Build(int ballast = 0)
    {
        var g = new OnnxGraphBuilder("vad_lite", Opset);
        g.Input("input", TensorElementType.Float32, BatchDim, SamplesDim);
        g.Input("state", TensorElementType.Float32, 2L, BatchDim, (long)StateWidth);
        g.Input("sr", TensorElementType.Int64);

        var decay = new float[StateWidth];
        var blend = new float[StateWidth];
        for (var j = 0; j < StateWidth; j++)
        {
            decay[j] = Decay(j);
            blend[j] = Blend(j);
        }

        // [batch, 1]: the chunk's peak power, scaled by the sample rate.
        var peak = g.Node("ReduceMax", [g.Node("Mul", ["input", "input"])], null, ("axes", new long[] { 1 }), ("keepdims", 1L));
        var rate = g.Node("Div", [
            g.Node("Cast", ["sr"], null, ("to", (long)OnnxGraphBuilder.OnnxDataType(TensorElementType.Float32))),
            g.Constant("reference_rate", [(float)ReferenceSampleRate]),
        ]);
        var energy = g.Node("Mul", [peak, rate]);

        // Each [1, batch, 128]; the energy [batch, 1] broadcasts over the lanes.
        var split = g.MultiOutputNode("Split", ["state"], [g.FreshName("level"), g.FreshName("count")], ("axis", 0L));
        var level = g.Node("Add", [
            g.Node("Mul", [split[0], g.Constant("decay", decay, StateWidth)]),
            g.Node("Mul", [energy, g.Constant("blend", blend, StateWidth)]),
        ]);
        if (ballast > 0)
        {
            level = g.Node("Add", [level, Ballast(g, split[0], ballast)]);
        }

        var count = g.Node("Add", [split[1], g.Constant("one", [1f])]);
        g.Node("Concat", [level, count], "stateN", ("axis", 0L));

        // Lane 0 of the new level, [batch, 1], squashed into (0, 1) by z / (|z| + 1).
        var lane0 = g.Node("Squeeze", [
            g.Node("Slice", [level, g.Constant("lane_start", [0L], 1), g.Constant("lane_end", [1L], 1), g.Constant("lane_axis", [2L], 1)]),
            g.Constant("squeeze_axis", [0L], 1),
        ]);
        var z = g.Node("Mul", [g.Node("Sub", [lane0, g.Constant("threshold", [Threshold])]), g.Constant("steepness", [Steepness])]);
        var squashed = g.Node("Div", [z, g.Node("Add", [g.Node("Abs", [z]), g.Constant("abs_one", [1f])])]);
        g.Node("Add", [g.Node("Mul", [squashed, g.Constant("half", [0.5f])]), g.Constant("offset", [0.5f])], "output");

        g.Output("output", TensorElementType.Float32, BatchDim, 1L);
        g.Output("stateN", TensorElementType.Float32, 2L, BatchDim, (long)StateWidth);
        return g;
    }

    /// <summary>
    /// [1, batch, 1] of zeros that cost a MatMul: the lanes (|x| &lt;= the largest energy, so finite) times weights in
    /// ±1/√128, their maximum times 0. Adding ±0 leaves every level exactly as it was.
    /// </summary>
    private static string Ballast(OnnxGraphBuilder g, string lanes, int width)
    {
        var random = new SplitMix64(0x5EED_7AD1);
        var weights = new float[StateWidth * width];
        var bound = 1.0 / Math.Sqrt(StateWidth);
        for (var i = 0; i < weights.Length; i++)
        {
            weights[i] = (float)(((random.NextDouble() * 2) - 1) * bound);
        }

        var product = g.Node("MatMul", [lanes, g.RawConstant("ballast_weights", weights, StateWidth, width)]);
        var peak = g.Node("ReduceMax", [product], null, ("axes", new long[] { 2 }), ("keepdims", 1L));
        return g.Node("Mul", [peak, g.Constant("ballast_zero", [0f])]);
    }
}
