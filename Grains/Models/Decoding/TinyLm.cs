using System.Globalization;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.Grains.Models.Decoding;

/// <summary>
/// The built-in <c>tiny-lm</c>: a GPT-2-architecture causal decoder with fixed pseudo-random weights, written as ONNX
/// in the Hugging Face / Optimum export convention (one "decoder_model_merged"-style graph that also takes an empty
/// past), so the decoder engine can be built and tested against it without downloading a model. Its text is
/// gibberish by design.
/// </summary>
/// <remarks>
/// <para>Inputs: <c>input_ids</c> int64 [batch_size, sequence_length]; <c>attention_mask</c> int64
/// [batch_size, past_sequence_length + sequence_length]; <c>position_ids</c> int64 [batch_size, sequence_length];
/// per layer N <c>past_key_values.N.key</c> / <c>.value</c> float32 [batch_size, heads, past_sequence_length, head_dim]
/// (length 0 for a prefill). Outputs: <c>logits</c> float32 [batch_size, sequence_length, 257] and per layer
/// <c>present.N.key</c> / <c>.value</c> = the past with the new keys/values appended along axis 2.</para>
/// <para>Key j is visible to new token i iff j &lt;= past_len + i and <c>attention_mask[b, j]</c> is 1, as in HF
/// GPT-2, so left-padded rows batch with others unchanged. Vocabulary: 256 byte tokens (id = byte value) and
/// <c>&lt;|endoftext|&gt;</c> = 256.</para>
/// <para>Logits are the final hidden state times the token embedding (tied, as GPT-2) plus a fixed bias,
/// <see cref="LogitsBias"/>: printable ASCII and '\n' +3, lowercase letters and space +1 more, end-of-text +1, other
/// bytes 0. The learned part of the logits is only about ±0.3 with these weights, so without the bias sampled text
/// would be mostly control and high bytes; with it, it is mostly letters and spaces and ends now and then.</para>
/// </remarks>
public static class TinyLm
{
    /// <summary>The model's name in the repository.</summary>
    public const string Name = "tiny-lm";

    /// <summary>256 byte tokens and end-of-text.</summary>
    public const int VocabSize = 257;

    /// <summary><c>&lt;|endoftext|&gt;</c>, GPT-2's name for it.</summary>
    public const int EndOfTextTokenId = 256;

    /// <summary>Symbolic dimension names, as Optimum writes them.</summary>
    public const string BatchDim = "batch_size";

    /// <summary>The new tokens' axis.</summary>
    public const string SequenceDim = "sequence_length";

    /// <summary>The cache's axis on input.</summary>
    public const string PastDim = "past_sequence_length";

    /// <summary>The mask's and the present cache's axis.</summary>
    public const string TotalDim = "past_sequence_length + sequence_length";

    private const int Opset = 17;
    private const float LayerNormEpsilon = 1e-5f;
    private const float InitStd = 0.02f;

    /// <summary>
    /// Added to masked attention scores. Large enough that exp underflows to exactly 0 beside any visible key, finite
    /// so a fully masked row (a padding query) gives a uniform softmax rather than NaN.
    /// </summary>
    private const float MaskedScore = -1e9f;

    /// <summary>
    /// Writes <c>&lt;modelDirectory&gt;/config.json</c> and <c>&lt;modelDirectory&gt;/1/model.onnx</c>, the same bytes
    /// for the same options on every machine.
    /// </summary>
    public static void Write(string modelDirectory, TinyLmOptions? options = null)
    {
        options ??= new TinyLmOptions();
        options.Validate();
        Build(options).Save(Path.Combine(modelDirectory, "1", ModelRepositoryScanner.OnnxFileName));
        File.WriteAllText(Path.Combine(modelDirectory, ModelRepositoryScanner.ConfigFile), ConfigJson(options));
    }

    /// <summary>
    /// Writes the model as <c>&lt;repository&gt;/tiny-lm</c> unless that folder exists. The files are written to a
    /// hidden temporary folder (the scanner skips names starting with '.') and renamed into place, so a crash never
    /// leaves half a model.
    /// </summary>
    /// <returns>Whether it wrote the model; false when the folder was there (or another writer got there first).</returns>
    public static bool EnsureIn(string repository, TinyLmOptions? options = null)
        => BuiltInModelFolder.EnsureIn(repository, Name, folder => Write(folder, options));

    /// <summary>The model's <c>config.json</c>.</summary>
    public static string ConfigJson(TinyLmOptions? options = null)
    {
        options ??= new TinyLmOptions();
        return string.Create(
            CultureInfo.InvariantCulture,
            $$"""{"kind":"decoder","tokenizer":"{{options.Tokenizer}}","max_context_tokens":{{options.MaxPositions}},"eos_token_id":{{options.EndOfTextId}},"max_batch_size":{{options.MaxBatchSize}}}""") + "\n";
    }

    /// <summary>Weights in the model (GPT-2 counting: embeddings, blocks, final LayerNorm) plus the logits bias.</summary>
    public static long ParameterCount(TinyLmOptions? options = null)
    {
        options ??= new TinyLmOptions();
        long d = options.DModel;
        var perLayer = (4 * d) + (3 * d * d) + (3 * d) + (d * d) + d + (4 * d * d) + (4 * d) + (4 * d * d) + d;
        return (options.Vocabulary * d) + (options.MaxPositions * d) + (options.Layers * perLayer) + (2 * d) + options.Vocabulary;
    }

    /// <summary>The fixed bias added to every position's logits (see the class remarks).</summary>
    public static float[] LogitsBias(TinyLmOptions? options = null)
    {
        options ??= new TinyLmOptions();
        var bias = new float[options.Vocabulary];
        for (var b = 32; b <= 126; b++)
        {
            bias[b] = 3f;
        }

        bias['\n'] = 3f;
        bias[' '] += 1f;
        for (var b = 'a'; b <= 'z'; b++)
        {
            bias[b] += 1f;
        }

        bias[options.EndOfTextId] = 1f;
        return bias;
    }

    /// <summary>The graph, not yet saved.</summary>
    internal static OnnxGraphBuilder Build(TinyLmOptions o)
    {
        int d = o.DModel, heads = o.Heads, headDim = o.HeadDim;
        var random = new SplitMix64(o.Seed);
        var g = new OnnxGraphBuilder("tiny_lm", Opset);

        g.Input("input_ids", TensorElementType.Int64, BatchDim, SequenceDim);
        g.Input("attention_mask", TensorElementType.Int64, BatchDim, TotalDim);
        g.Input("position_ids", TensorElementType.Int64, BatchDim, SequenceDim);
        for (var layer = 0; layer < o.Layers; layer++)
        {
            g.Input($"past_key_values.{layer}.key", TensorElementType.Float32, BatchDim, (long)heads, PastDim, (long)headDim);
            g.Input($"past_key_values.{layer}.value", TensorElementType.Float32, BatchDim, (long)heads, PastDim, (long)headDim);
        }

        // The merged form's switch: routed through layer 0's past so that the graph consumes it (see TinyLmOptions).
        var pastKey0 = "past_key_values.0.key";
        if (o.UseCacheBranch)
        {
            g.Input("use_cache_branch", TensorElementType.Bool, 1L);
            pastKey0 = g.Node("Where", ["use_cache_branch", pastKey0, pastKey0]);
        }

        var wte = g.RawConstant("transformer.wte.weight", Normal(random, o.Vocabulary * d, InitStd), o.Vocabulary, d);
        var wpe = g.RawConstant("transformer.wpe.weight", Normal(random, o.MaxPositions * d, InitStd / 2), o.MaxPositions, d);
        var h = g.Node("Add", [
            g.Node("Gather", [wte, "input_ids"], null, ("axis", 0L)),
            g.Node("Gather", [wpe, "position_ids"], null, ("axis", 0L)),
        ]);

        var scoreBias = AttentionBias(g);
        var splitHeads = g.Constant("split_heads_shape", [0L, 0L, heads, headDim], 4);
        var mergeHeads = g.Constant("merge_heads_shape", [0L, 0L, d], 3);
        var scale = g.Constant("attention_scale", [(float)(1.0 / Math.Sqrt(headDim))]);

        // GPT-2 scales the projections into the residual stream by 1/sqrt(2 * layers) so its variance stays put.
        var residualStd = (float)(InitStd / Math.Sqrt(2.0 * o.Layers));
        for (var layer = 0; layer < o.Layers; layer++)
        {
            var p = $"transformer.h.{layer}";
            string Heads(string x) => g.Node("Transpose", [g.Node("Reshape", [x, splitHeads])], null, ("perm", new long[] { 0, 2, 1, 3 }));

            var ln1 = LayerNorm(g, h, $"{p}.ln_1", d);
            var qkv = Linear(g, random, ln1, $"{p}.attn.c_attn", d, 3 * d, InitStd);
            var split = g.MultiOutputNode("Split", [qkv], [g.FreshName("q"), g.FreshName("k"), g.FreshName("v")], ("axis", 2L));
            var q = g.Node("Mul", [Heads(split[0]), scale]);
            var keys = g.Node("Concat", [layer == 0 ? pastKey0 : $"past_key_values.{layer}.key", Heads(split[1])], $"present.{layer}.key", ("axis", 2L));
            var values = g.Node("Concat", [$"past_key_values.{layer}.value", Heads(split[2])], $"present.{layer}.value", ("axis", 2L));
            var scores = g.Node("Add", [
                g.Node("MatMul", [q, g.Node("Transpose", [keys], null, ("perm", new long[] { 0, 1, 3, 2 }))]),
                scoreBias,
            ]);
            var probs = g.Node("Softmax", [scores], null, ("axis", -1L));
            var context = g.Node("Reshape", [
                g.Node("Transpose", [g.Node("MatMul", [probs, values])], null, ("perm", new long[] { 0, 2, 1, 3 })),
                mergeHeads,
            ]);
            h = g.Node("Add", [h, Linear(g, random, context, $"{p}.attn.c_proj", d, d, residualStd)]);

            var ln2 = LayerNorm(g, h, $"{p}.ln_2", d);
            var hidden = GeluTanh(g, Linear(g, random, ln2, $"{p}.mlp.c_fc", d, 4 * d, InitStd));
            h = g.Node("Add", [h, Linear(g, random, hidden, $"{p}.mlp.c_proj", 4 * d, d, residualStd)]);
        }

        var final = LayerNorm(g, h, "transformer.ln_f", d);
        var tied = g.Node("Transpose", [wte], null, ("perm", new long[] { 1, 0 }));
        var bias = g.RawConstant("lm_head.bias", LogitsBias(o), o.Vocabulary);
        g.Node("Add", [g.Node("MatMul", [final, tied]), bias], "logits");

        g.Output("logits", TensorElementType.Float32, BatchDim, SequenceDim, (long)o.Vocabulary);
        for (var layer = 0; layer < o.Layers; layer++)
        {
            g.Output($"present.{layer}.key", TensorElementType.Float32, BatchDim, (long)heads, TotalDim, (long)headDim);
            g.Output($"present.{layer}.value", TensorElementType.Float32, BatchDim, (long)heads, TotalDim, (long)headDim);
        }

        return g;
    }

    /// <summary>
    /// 0 where key j is visible to new query i, <see cref="MaskedScore"/> elsewhere: [batch, 1, seq, past + seq],
    /// built once and added to every layer's scores. The past's length comes from layer 0's cache shape at run time.
    /// </summary>
    private static string AttentionBias(OnnxGraphBuilder g)
    {
        var axes0 = g.Constant("mask_axes_0", [0L], 1);
        var axes1 = g.Constant("mask_axes_1", [1L], 1);
        var axes12 = g.Constant("mask_axes_1_2", [1L, 2L], 2);
        var zero = g.Constant("mask_zero", [0L]);
        var one = g.Constant("mask_one", [1L]);
        var visibleScore = g.Constant("mask_visible_score", [0f]);
        var maskedScore = g.Constant("mask_masked_score", [MaskedScore]);

        var pastLength = g.Node("Shape", ["past_key_values.0.key"], null, ("start", 2L), ("end", 3L));
        var newLength = g.Node("Shape", ["input_ids"], null, ("start", 1L), ("end", 2L));
        var past = g.Node("Squeeze", [pastLength, axes0]);
        var total = g.Node("Squeeze", [g.Node("Add", [pastLength, newLength]), axes0]);

        // Query i sits at absolute position past + i; key j at j.
        var queryPositions = g.Node("Range", [past, total, one]);
        var keyPositions = g.Node("Range", [zero, total, one]);
        var causal = g.Node("LessOrEqual", [
            g.Node("Unsqueeze", [keyPositions, axes0]),
            g.Node("Unsqueeze", [queryPositions, axes1]),
        ]);
        var attended = g.Node("Unsqueeze", [g.Node("Cast", ["attention_mask"], null, ("to", (long)OnnxGraphBuilder.OnnxDataType(TensorElementType.Bool))), axes12]);
        var visible = g.Node("And", [causal, attended]);
        return g.Node("Where", [visible, visibleScore, maskedScore], "attention_bias");
    }

    private static string LayerNorm(OnnxGraphBuilder g, string x, string prefix, int d)
    {
        var gamma = g.RawConstant($"{prefix}.weight", Filled(d, 1f), d);
        var beta = g.RawConstant($"{prefix}.bias", new float[d], d);
        return g.Node("LayerNormalization", [x, gamma, beta], null, ("axis", -1L), ("epsilon", LayerNormEpsilon));
    }

    /// <summary>x · W + b, with W [in, out] (GPT-2's Conv1D layout) and a small random bias so the bias path is tested.</summary>
    private static string Linear(OnnxGraphBuilder g, SplitMix64 random, string x, string prefix, int inputs, int outputs, float std)
    {
        var w = g.RawConstant($"{prefix}.weight", Normal(random, inputs * outputs, std), inputs, outputs);
        var b = g.RawConstant($"{prefix}.bias", Normal(random, outputs, InitStd), outputs);
        return g.Node("Add", [g.Node("MatMul", [x, w]), b]);
    }

    /// <summary>GPT-2's gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), from basic ops (Gelu is opset 20).</summary>
    private static string GeluTanh(OnnxGraphBuilder g, string x)
    {
        var cube = g.Node("Mul", [g.Node("Mul", [x, x]), x]);
        var inner = g.Node("Mul", [
            g.Node("Add", [x, g.Node("Mul", [cube, g.Constant(g.FreshName("gelu_k"), [0.044715f])])]),
            g.Constant(g.FreshName("gelu_sqrt_2_over_pi"), [0.7978845608f]),
        ]);
        var onePlusTanh = g.Node("Add", [g.Node("Tanh", [inner]), g.Constant(g.FreshName("gelu_one"), [1f])]);
        return g.Node("Mul", [g.Node("Mul", [x, g.Constant(g.FreshName("gelu_half"), [0.5f])]), onePlusTanh]);
    }

    private static float[] Filled(int count, float value)
    {
        var values = new float[count];
        Array.Fill(values, value);
        return values;
    }

    /// <summary>
    /// Normal(0, std) by Irwin–Hall (the sum of 12 uniforms minus 6): only additions and multiplications, which IEEE
    /// rounds the same everywhere, whereas Box–Muller's log and cos come from the platform's math library and may
    /// differ in the last bit, which would make the file's bytes machine-dependent.
    /// </summary>
    private static float[] Normal(SplitMix64 random, int count, float std)
    {
        var values = new float[count];
        for (var i = 0; i < count; i++)
        {
            var sum = 0.0;
            for (var k = 0; k < 12; k++)
            {
                sum += random.NextDouble();
            }

            values[i] = (float)((sum - 6.0) * std);
        }

        return values;
    }
}
