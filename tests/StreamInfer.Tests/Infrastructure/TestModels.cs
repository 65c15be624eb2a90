using Google.Protobuf;
using Onnx;
using StreamInfer.Grains.Models.Onnx;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>
/// The tests' ONNX models, generated as graphs in code (never shipped as opaque bytes) into a Triton-style repository.
/// </summary>
public static class TestModels
{
    /// <summary>
    /// <c>seq</c>: a sequence model with a dynamic axis and a mask. <c>tokens</c> float32 [batch, seq, 4] and
    /// <c>mask</c> int64 [batch, seq] in; <c>hidden</c> = (tokens·W + b) masked, float32 [batch, seq, 3], and
    /// <c>pooled</c> = the masked mean of <c>hidden</c> over seq, float32 [batch, 3], out. Padding a request (with mask 0)
    /// leaves its outputs unchanged, which is what the batcher's padding relies on.
    /// </summary>
    public static void WriteSequence(string repository, string name = "seq", int maxBatchSize = 8, string? extraConfig = null)
    {
        var g = new OnnxGraphBuilder(name);
        g.Input("tokens", TensorElementType.Float32, "batch", "seq", 4L);
        g.Input("mask", TensorElementType.Int64, "batch", "seq");
        var w = g.Constant("W", [0.5f, -1f, 0.25f, 1.5f, 0.75f, -0.5f, -2f, 0.1f, 1f, 0.3f, -0.7f, 2f], 4, 3);
        var b = g.Constant("b", [0.1f, -0.2f, 0.3f], 3);
        var projected = g.Node("Add", [g.Node("MatMul", ["tokens", w]), b]);
        var maskF = g.Node("Cast", ["mask"], null, ("to", 1L));
        var last = g.Constant("last_axis", [-1L], 1);
        var seqAxis = g.Constant("seq_axis", [1L], 1);
        g.Node("Mul", [projected, g.Node("Unsqueeze", [maskF, last])], "hidden");
        var summed = g.Node("ReduceSum", ["hidden", seqAxis], null, ("keepdims", 0L));
        var count = g.Node("ReduceSum", [maskF, seqAxis], null, ("keepdims", 1L));
        g.Node("Div", [summed, count], "pooled");
        g.Output("hidden", TensorElementType.Float32, "batch", "seq", 3L);
        g.Output("pooled", TensorElementType.Float32, "batch", 3L);
        g.Save(Path.Combine(repository, name, "1", "model.onnx"));
        File.WriteAllText(Path.Combine(repository, name, "config.json"), $$"""
            { "kind": "tensor", "max_batch_size": {{maxBatchSize}}, "mask_input": "mask" {{extraConfig}} }
            """);
    }

    /// <summary>
    /// <c>multi</c>: one input and one output per supported element type. <c>f32</c> [batch,3] → <c>f32_out</c> = 2x;
    /// <c>f16</c> [batch,2] → <c>f16_out</c> = x + x; <c>i64</c> [batch,2] → <c>i64_sum</c> [batch,1] = row sum;
    /// <c>i32</c> [batch,2] → <c>i32_out</c> = x + x; <c>flag</c> bool [batch,2] → <c>flag_out</c> = not x;
    /// <c>text</c> string [batch,1] → <c>text_out</c> = x.
    /// </summary>
    public static void WriteMulti(string repository, string name = "multi", int maxBatchSize = 8)
    {
        var g = new OnnxGraphBuilder(name);
        g.Input("f32", TensorElementType.Float32, "batch", 3L);
        g.Input("f16", TensorElementType.Float16, "batch", 2L);
        g.Input("i64", TensorElementType.Int64, "batch", 2L);
        g.Input("i32", TensorElementType.Int32, "batch", 2L);
        g.Input("flag", TensorElementType.Bool, "batch", 2L);
        g.Input("text", TensorElementType.String, "batch", 1L);
        g.Node("Mul", ["f32", g.Constant("two", [2f], 1)], "f32_out");
        g.Node("Add", ["f16", "f16"], "f16_out");
        g.Node("ReduceSum", ["i64", g.Constant("axis1", [1L], 1)], "i64_sum", ("keepdims", 1L));
        g.Node("Add", ["i32", "i32"], "i32_out");
        g.Node("Not", ["flag"], "flag_out");
        g.Node("Identity", ["text"], "text_out");
        g.Output("f32_out", TensorElementType.Float32, "batch", 3L);
        g.Output("f16_out", TensorElementType.Float16, "batch", 2L);
        g.Output("i64_sum", TensorElementType.Int64, "batch", 1L);
        g.Output("i32_out", TensorElementType.Int32, "batch", 2L);
        g.Output("flag_out", TensorElementType.Bool, "batch", 2L);
        g.Output("text_out", TensorElementType.String, "batch", 1L);
        g.Save(Path.Combine(repository, name, "1", "model.onnx"));
        File.WriteAllText(Path.Combine(repository, name, "config.json"), $$"""
            { "kind": "tensor", "max_batch_size": {{maxBatchSize}} }
            """);
    }

    /// <summary>
    /// <c>lookup</c>: <c>ids</c> int64 [batch, 1] → <c>vectors</c> float32 [batch, 1, 2], rows of a 10-row table. An id
    /// outside 0..9 passes admission (type and shape are right) and fails only when the model runs.
    /// </summary>
    public static void WriteLookup(string repository, string name = "lookup")
    {
        var g = new OnnxGraphBuilder(name);
        g.Input("ids", TensorElementType.Int64, "batch", 1L);
        var table = g.Constant("table", [.. Enumerable.Range(0, 20).Select(i => (float)i)], 10, 2);
        g.Node("Gather", [table, "ids"], "vectors", ("axis", 0L));
        g.Output("vectors", TensorElementType.Float32, "batch", 1L, 2L);
        g.Save(Path.Combine(repository, name, "1", "model.onnx"));
        File.WriteAllText(Path.Combine(repository, name, "config.json"), """{ "kind": "tensor", "max_batch_size": 8 }""");
    }

    /// <summary>
    /// <c>x</c> float32 [batch, 2] → <c>y</c> = <paramref name="factor"/> · x, as version <paramref name="version"/> of
    /// <paramref name="name"/> (rollout tests: each version's factor tells which version answered). The config pins
    /// version 1, so later versions serve only once rolled out.
    /// </summary>
    public static void WriteScale(string repository, string name, string version, float factor, string input = "x")
    {
        var g = new OnnxGraphBuilder(name);
        g.Input(input, TensorElementType.Float32, "batch", 2L);
        g.Node("Mul", [input, g.Constant("factor", [factor], 1)], "y");
        g.Output("y", TensorElementType.Float32, "batch", 2L);
        g.Save(Path.Combine(repository, name, version, "model.onnx"));
        File.WriteAllText(Path.Combine(repository, name, "config.json"), """{ "kind": "tensor", "max_batch_size": 8, "version": "1" }""");
    }

    /// <summary>
    /// <c>image</c>: <c>pixels</c> float32 [batch, 3, height, width], both spatial axes dynamic, in; <c>sums</c> float32
    /// [batch, 3] = the sum of each channel (padding with zeros leaves it unchanged), and <c>seen</c> int64 [batch, 2] =
    /// the height and width the model was run at, out: <c>seen</c> tells whether a request was padded, and to what.
    /// <paramref name="metadata"/> goes into the file's <c>metadata_props</c>.
    /// </summary>
    public static void WriteImage(string repository, string name = "image", string? extraConfig = null, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var g = new OnnxGraphBuilder(name);
        g.Input("pixels", TensorElementType.Float32, "batch", 3L, "height", "width");
        g.Node("ReduceSum", ["pixels", g.Constant("spatial", [2L, 3L], 2)], "sums", ("keepdims", 0L));
        var shape = g.Node("Shape", ["pixels"]);
        var hw = g.Node("Slice", [shape, g.Constant("hw_start", [2L], 1), g.Constant("hw_end", [4L], 1)]);
        var rows = g.Node("Slice", [shape, g.Constant("b_start", [0L], 1), g.Constant("b_end", [1L], 1)]);
        var target = g.Node("Concat", [rows, g.Constant("two", [2L], 1)], null, ("axis", 0L));
        g.Node("Expand", [hw, target], "seen");
        g.Output("sums", TensorElementType.Float32, "batch", 3L);
        g.Output("seen", TensorElementType.Int64, "batch", 2L);
        var model = g.Build();
        foreach (var (key, value) in metadata ?? new Dictionary<string, string>())
        {
            model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        }

        var path = Path.Combine(repository, name, "1", "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, model.ToByteArray());
        File.WriteAllText(Path.Combine(repository, name, "config.json"), $$"""
            { "kind": "tensor", "max_batch_size": 8 {{extraConfig}} }
            """);
    }

    /// <summary>The width of <see cref="WriteStateful"/>'s state.</summary>
    public const int StateWidth = 4;

    /// <summary>
    /// <c>vad</c>, shaped like silero VAD: <c>input</c> float32 [batch, samples], <c>state</c> float32 [2, batch, 4] (the
    /// batch on axis 1) and <c>sr</c> int64 scalar in; <c>stateN</c> = 0.5·state + mean(input) + sr/1000 [2, batch, 4]
    /// and <c>output</c> = the sum of a row's <c>stateN</c> [batch, 1] out. Without <paramref name="sequence"/> the
    /// config only declares the batch axes and <c>sr</c> shared (a client sends the state); with it, <c>state</c> and
    /// <c>stateN</c> are the sequence's state pair. <paramref name="decay"/> replaces the 0.5 (a second version that
    /// computes differently); <paramref name="flags"/> adds float32 [batch] inputs <c>first</c> and <c>last</c>, the
    /// sequence's start and end flags, which add 100 and 1000 to the next state. <paramref name="sequenceConfig"/> is added
    /// inside the <c>sequence</c> section (an <c>idle_timeout_ms</c>, say).
    /// </summary>
    public static void WriteStateful(string repository, string name = "vad", bool sequence = true, string? extraConfig = null, float decay = 0.5f, bool flags = false, int maxBatchSize = 8, string? sequenceConfig = null)
    {
        var g = new OnnxGraphBuilder(name);
        g.Input("input", TensorElementType.Float32, "batch", "samples");
        g.Input("state", TensorElementType.Float32, 2L, "batch", (long)StateWidth);
        g.Input("sr", TensorElementType.Int64);
        var mean = g.Node("ReduceMean", ["input"], null, ("axes", new[] { 1L }), ("keepdims", 1L));
        var rate = g.Node("Mul", [g.Node("Cast", ["sr"], null, ("to", 1L)), g.Constant("per_khz", [0.001f])]);
        var decayed = g.Node("Mul", ["state", g.Constant("decay", [decay])]);
        var next = g.Node("Add", [decayed, mean]);
        if (flags)
        {
            g.Input("first", TensorElementType.Float32, "batch");
            g.Input("last", TensorElementType.Float32, "batch");
            var marks = g.Node("Add", [g.Node("Mul", ["first", g.Constant("hundred", [100f])]), g.Node("Mul", ["last", g.Constant("thousand", [1000f])])]);
            next = g.Node("Add", [next, g.Node("Unsqueeze", [marks, g.Constant("flag_axis", [1L], 1)])]);
        }

        g.Node("Add", [next, rate], "stateN");
        var summed = g.Node("ReduceSum", ["stateN", g.Constant("state_axes", [0L, 2L], 2)], null, ("keepdims", 0L));
        g.Node("Unsqueeze", [summed, g.Constant("row_axis", [1L], 1)], "output");
        g.Output("output", TensorElementType.Float32, "batch", 1L);
        g.Output("stateN", TensorElementType.Float32, 2L, "batch", (long)StateWidth);
        g.Save(Path.Combine(repository, name, "1", "model.onnx"));
        var section = sequence
            ? $$""", "sequence": { "state": [{ "input": "state", "output": "stateN" }] {{(flags ? """, "start_input": "first", "end_input": "last" """ : string.Empty)}} {{sequenceConfig}} }"""
            : string.Empty;
        File.WriteAllText(Path.Combine(repository, name, "config.json"), $$"""
            { "kind": "tensor", "max_batch_size": {{maxBatchSize}},
              "inputs": [{ "name": "input" }, { "name": "state", "batch_axis": 1 }, { "name": "sr", "shared": true }],
              "outputs": [{ "name": "output" }, { "name": "stateN", "batch_axis": 1 }] {{section}} {{extraConfig}} }
            """);
    }

    /// <summary>
    /// What <see cref="WriteStateful"/>'s model computes for one row: its next state and its output, in float32 as the
    /// model does.
    /// </summary>
    public static (float[] State, float Output) StatefulStep(float[] state, float[] input, long sr, float decay = 0.5f, bool first = false, bool last = false)
    {
        var mean = input.Sum() / input.Length;
        var marks = (first ? 100f : 0f) + (last ? 1000f : 0f);
        var next = state.Select(s => (s * decay) + mean + marks + (sr * 0.001f)).ToArray();
        return (next, next.Sum());
    }

    /// <summary>
    /// <c>x</c> float32 [batch, 2] → <c>log</c> = ln x and <c>inverse</c> = 1 / x: a negative element makes a NaN, a zero
    /// one -Infinity and +Infinity, outputs that JSON has no number for.
    /// </summary>
    public static void WriteNonFinite(string repository, string name = "non-finite")
    {
        var g = new OnnxGraphBuilder(name);
        g.Input("x", TensorElementType.Float32, "batch", 2L);
        g.Node("Log", ["x"], "log");
        g.Node("Div", [g.Constant("one", [1f], 1), "x"], "inverse");
        g.Output("log", TensorElementType.Float32, "batch", 2L);
        g.Output("inverse", TensorElementType.Float32, "batch", 2L);
        g.Save(Path.Combine(repository, name, "1", "model.onnx"));
        File.WriteAllText(Path.Combine(repository, name, "config.json"), """{ "kind": "tensor", "max_batch_size": 4, "inputs": [{ "name": "x", "warmup": 1 }] }""");
    }

    /// <summary>A fresh repository folder under the temp directory with <c>seq</c>, <c>multi</c>, <c>lookup</c> and the stateful <c>vad</c> in it.</summary>
    public static string NewRepository()
    {
        var root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        WriteSequence(root);
        WriteMulti(root);
        WriteLookup(root);
        WriteStateful(root);
        return root;
    }
}
