using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Models.Repository;
using OrtType = Microsoft.ML.OnnxRuntime.Tensors.TensorElementType;

namespace StreamInfer.Grains.Models.Decoding;

/// <summary>
/// A causal decoder's ONNX graph in the Hugging Face / Optimum export convention: <c>input_ids</c>,
/// <c>attention_mask</c>, <c>position_ids</c>, <c>past_key_values.N.key|value</c> and, in a merged export,
/// <c>use_cache_branch</c>, giving <c>logits</c> and <c>present.N.key|value</c>. <see cref="Read"/> checks that a
/// session follows it and reads the cache's dimensions from it.
/// </summary>
/// <param name="Shape">The cache and vocabulary dimensions.</param>
/// <param name="HasUseCacheBranch">Whether the graph takes <c>use_cache_branch</c>.</param>
internal sealed record DecoderGraph(DecoderShape Shape, bool HasUseCacheBranch)
{
    public const string InputIds = "input_ids";
    public const string AttentionMask = "attention_mask";
    public const string PositionIds = "position_ids";
    public const string UseCacheBranch = "use_cache_branch";
    public const string Logits = "logits";

    /// <summary>The inputs in the order a step passes them: ids, mask, positions, each layer's past key and value, the branch.</summary>
    public string[] InputNames()
    {
        List<string> inputs = [InputIds, AttentionMask, PositionIds];
        for (var l = 0; l < Shape.Layers; l++)
        {
            inputs.Add(PastName(l, key: true));
            inputs.Add(PastName(l, key: false));
        }

        if (HasUseCacheBranch)
        {
            inputs.Add(UseCacheBranch);
        }

        return [.. inputs];
    }

    /// <summary>The outputs in the order a step reads them: logits, then each layer's present key and value.</summary>
    public string[] OutputNames()
    {
        List<string> outputs = [Logits];
        for (var l = 0; l < Shape.Layers; l++)
        {
            outputs.Add(PresentName(l, key: true));
            outputs.Add(PresentName(l, key: false));
        }

        return [.. outputs];
    }

    /// <summary>
    /// Checks <paramref name="session"/> against the convention and reads the cache's dimensions. Returns null, with the
    /// reasons in <paramref name="errors"/>, when it does not follow it.
    /// </summary>
    public static DecoderGraph? Read(InferenceSession session, ModelDefinition definition, IDecoderTokenizer tokenizer, List<ModelLoadError> errors)
    {
        void Error(string? file, string? field, string reason) => errors.Add(new ModelLoadError(definition.Name, file, field, reason));

        var before = errors.Count;
        var inputs = session.InputMetadata;
        var outputs = session.OutputMetadata;
        void Need(IReadOnlyDictionary<string, NodeMetadata> metadata, string name, TensorElementType type, string what)
        {
            if (!metadata.TryGetValue(name, out var m))
            {
                Error(definition.OnnxFile, null, $"a decoder needs the {what} '{name}' (the Hugging Face / Optimum export convention); the model has {string.Join(", ", metadata.Keys)}.");
            }
            else if (!m.IsTensor || !TensorSignature.TryMap(m.ElementDataType, out var actual) || actual != type)
            {
                Error(definition.OnnxFile, null, $"the {what} '{name}' must be a {type.ToWire()} tensor.");
            }
        }

        Need(inputs, InputIds, TensorElementType.Int64, "input");
        Need(inputs, AttentionMask, TensorElementType.Int64, "input");
        Need(inputs, PositionIds, TensorElementType.Int64, "input");
        Need(outputs, Logits, TensorElementType.Float32, "output");
        var layers = 0;
        while (inputs.ContainsKey(PastName(layers, key: true)))
        {
            layers++;
        }

        if (layers == 0)
        {
            Error(definition.OnnxFile, null, "a decoder needs 'past_key_values.0.key' and '.value' inputs (a model exported with its cache, e.g. Optimum's decoder_model_merged).");
        }

        int heads = 0, headDim = 0;
        for (var l = 0; l < layers && errors.Count == before; l++)
        {
            foreach (var key in new[] { true, false })
            {
                Need(inputs, PastName(l, key), TensorElementType.Float32, "input");
                Need(outputs, PresentName(l, key), TensorElementType.Float32, "output");
                if (inputs.TryGetValue(PastName(l, key), out var past) && past.Dimensions.Length == 4 && past.Dimensions[1] > 0 && past.Dimensions[3] > 0)
                {
                    if (heads != 0 && (heads != past.Dimensions[1] || headDim != past.Dimensions[3]))
                    {
                        Error(definition.OnnxFile, null, $"'{PastName(l, key)}' has {past.Dimensions[1]} heads of {past.Dimensions[3]}; earlier layers have {heads} of {headDim}.");
                    }

                    heads = past.Dimensions[1];
                    headDim = past.Dimensions[3];
                }
                else if (inputs.ContainsKey(PastName(l, key)))
                {
                    Error(definition.OnnxFile, null, $"'{PastName(l, key)}' must be [batch, heads, past_sequence, head_dim] with a fixed number of heads and head size.");
                }
            }
        }

        var hasBranch = inputs.TryGetValue(UseCacheBranch, out var branch);
        if (hasBranch && branch!.ElementDataType != OrtType.Bool)
        {
            Error(definition.OnnxFile, null, $"'{UseCacheBranch}' must be a bool tensor.");
        }

        var vocab = outputs.TryGetValue(Logits, out var logits) && logits.Dimensions.Length == 3 && logits.Dimensions[2] > 0 ? logits.Dimensions[2] : tokenizer.VocabSize;
        if (vocab < tokenizer.VocabSize)
        {
            Error(definition.OnnxFile, null, $"the model's logits cover {vocab} tokens, fewer than the tokenizer's {tokenizer.VocabSize}.");
        }

        return errors.Count > before ? null : new DecoderGraph(new DecoderShape(layers, heads, headDim, vocab), hasBranch);
    }

    private static string PastName(int layer, bool key) => string.Create(CultureInfo.InvariantCulture, $"past_key_values.{layer}.{(key ? "key" : "value")}");

    private static string PresentName(int layer, bool key) => string.Create(CultureInfo.InvariantCulture, $"present.{layer}.{(key ? "key" : "value")}");
}
