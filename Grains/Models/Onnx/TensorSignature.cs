using System.Collections.Immutable;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Repository;
using OrtType = Microsoft.ML.OnnxRuntime.Tensors.TensorElementType;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// One input or output of a tensor model. <see cref="Dims"/> is the model's whole shape, the batch axis included at
/// <see cref="BatchAxis"/> (0 unless the config says otherwise; <see cref="Shared"/> for an input with none); -1 marks a
/// dynamic axis. <see cref="Axes"/> names every dynamic axis: axes of one name are padded together, and an output axis
/// that shares a name with a padded input axis is cut back to each request's own length.
/// </summary>
internal sealed record TensorSlot(string Name, TensorElementType Type, OrtType OrtType, long[] Dims, string?[] Axes, int BatchAxis = 0)
{
    /// <summary>The <see cref="BatchAxis"/> of an input with no batch axis, whose value one batch's requests share.</summary>
    public const int SharedAxis = -1;

    public int Rank => Dims.Length;

    /// <summary>An input with no batch axis: every request of a batch gives the same value, fed once.</summary>
    public bool Shared => BatchAxis == SharedAxis;

    /// <summary>The model's shape with the batch axis as -1 (a shared input's shape as it is).</summary>
    public TensorSpec ToSpec() => new(Name, Type, Shared ? [.. Dims] : Rank == 0 ? [-1] : [.. Dims.Select((d, k) => k == BatchAxis ? -1 : d)]);

    /// <summary>Whether axis <paramref name="k"/> is one a request sets (not the batch axis).</summary>
    public bool IsOwnAxis(int k) => k != BatchAxis;

    /// <summary>The axis of a request's tensor that stands for the model's axis <paramref name="k"/>: the same when the
    /// request sends the batch axis, one less past it when it leaves it out.</summary>
    public int RequestAxis(int k, bool batched) => batched || Shared || k < BatchAxis ? k : k - 1;
}

/// <summary>
/// The inputs and outputs of a tensor model, from its ONNX metadata refined by its config, and the longest each bounded
/// dynamic input axis may be (by axis name); for a stateful model, what the grid feeds it itself
/// (<see cref="SequenceSignature"/>; null for a stateless one).
/// </summary>
internal sealed record TensorSignature(ImmutableArray<TensorSlot> Inputs, ImmutableArray<TensorSlot> Outputs, int? MaskIndex, ImmutableDictionary<string, long> AxisMax, SequenceSignature? Sequence = null)
{
    /// <summary>
    /// The ONNX metadata key (<c>metadata_props</c>) that bounds a dynamic input axis, followed by the axis's name in the
    /// file: <c>streaminfer.axis_max.seq</c> = <c>512</c>. A config <c>{"max"}</c> at the same place wins.
    /// </summary>
    public const string AxisMaxMetadataPrefix = "streaminfer.axis_max.";

    /// <summary>Reads the session's metadata and merges the config's declarations; every problem goes to <paramref name="errors"/>.</summary>
    public static TensorSignature? Build(InferenceSession session, ModelDefinition definition, List<ModelLoadError> errors)
    {
        var config = definition.Config;
        var before = errors.Count;
        void Error(string? field, string reason) => errors.Add(new ModelLoadError(definition.Name, field is null ? definition.OnnxFile : $"{definition.Name}/{ModelRepositoryScanner.ConfigFile}", field, reason));

        var inputs = Slots(session.InputMetadata, "input", Error);
        var outputs = Slots(session.OutputMetadata, "output", Error);
        var maxima = MetadataMaxima(session.ModelMetadata.CustomMetadataMap, inputs, config.Inputs, Error);
        Refine(inputs, config.Inputs, "inputs", "input", Error, maxima);
        Refine(outputs, config.Outputs, "outputs", "output", Error, maxima);
        if (config.Outputs is { } declared)
        {
            // A state output is read whether or not it is declared: the grid carries it to the next request.
            var keep = declared.Select(d => d.Name).Concat(config.Sequence?.State?.Select(p => p.Output) ?? []).ToHashSet(StringComparer.Ordinal);
            outputs.RemoveAll(o => !keep.Contains(o.Name));
        }

        foreach (var input in inputs)
        {
            CheckBatchAxis(input, "input", definition.Options.MaxBatchSize, Error);
        }

        foreach (var output in outputs)
        {
            // An output with no shape in the file (rank unknown) is checked by the warm-up run instead.
            if (output.Rank > 0)
            {
                CheckBatchAxis(output, "output", definition.Options.MaxBatchSize, Error);
            }
        }

        var sequence = config.Sequence is { } section ? SequenceSignature.Build(section, inputs, outputs, Error) : null;
        int? mask = null;
        if (config.MaskInput is { } maskName)
        {
            var index = inputs.FindIndex(i => i.Name == maskName);
            if (index < 0)
            {
                Error("mask_input", $"the model has no input '{maskName}' (it has {string.Join(", ", inputs.Select(i => i.Name))}).");
            }
            else if (inputs[index].Type == TensorElementType.String || inputs[index].Rank < 2 || inputs[index].Shared)
            {
                Error("mask_input", $"input '{maskName}' cannot be a mask: a mask is a numeric or bool tensor of rank 2 or more, with a batch axis.");
            }
            else if (sequence?.Feeds(index) == true)
            {
                Error("mask_input", $"input '{maskName}' is fed by the grid as a sequence's state or flag, so it cannot also be the mask.");
            }
            else
            {
                mask = index;
            }
        }

        // Axes of one name are padded together, so the tightest maximum among them bounds them all.
        var axisMax = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var ((input, k), max) in maxima)
        {
            var slot = inputs.Find(i => i.Name == input);
            if (slot is not null && slot.Dims[k] < 0 && slot.IsOwnAxis(k))
            {
                var axis = slot.Axes[k]!;
                axisMax[axis] = Math.Min(axisMax.GetValueOrDefault(axis, long.MaxValue), max);
            }
        }

        return errors.Count > before ? null : new TensorSignature([.. inputs], [.. outputs], mask, axisMax.ToImmutableDictionary(StringComparer.Ordinal), sequence);
    }

    /// <summary>The maxima the ONNX file's metadata gives, by input and axis position; an input's batch axis (as the
    /// config <paramref name="declared"/> places it) takes none.</summary>
    private static Dictionary<(string Input, int Axis), long> MetadataMaxima(IReadOnlyDictionary<string, string> metadata, List<TensorSlot> inputs, List<TensorDeclaration>? declared, Action<string?, string> error)
    {
        var maxima = new Dictionary<(string, int), long>();
        foreach (var (key, value) in metadata)
        {
            if (!key.StartsWith(AxisMaxMetadataPrefix, StringComparison.Ordinal))
            {
                continue;
            }

            var axis = key[AxisMaxMetadataPrefix.Length..];
            if (!long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var max) || max < 1)
            {
                error(null, $"metadata '{key}' is \"{value}\"; an axis maximum is a whole number of at least 1.");
                continue;
            }

            var found = false;
            foreach (var slot in inputs)
            {
                var batchAxis = declared?.Find(x => x.Name == slot.Name) is { } d ? d.Shared == true ? TensorSlot.SharedAxis : d.BatchAxis ?? 0 : 0;
                for (var k = 0; k < slot.Rank; k++)
                {
                    if (k != batchAxis && slot.Dims[k] < 0 && slot.Axes[k] == axis)
                    {
                        maxima[(slot.Name, k)] = max;
                        found = true;
                    }
                }
            }

            if (!found)
            {
                error(null, $"metadata '{key}' names no dynamic axis of the model's inputs.");
            }
        }

        return maxima;
    }

    private static List<TensorSlot> Slots(IReadOnlyDictionary<string, NodeMetadata> metadata, string what, Action<string?, string> error)
    {
        var slots = new List<TensorSlot>();
        foreach (var (name, node) in metadata)
        {
            if (!node.IsTensor)
            {
                error(null, $"{what} '{name}' is a {node.OnnxValueType}, not a tensor; tensor models take and return tensors only.");
                continue;
            }

            if (!TryMap(node.ElementDataType, out var type))
            {
                error(null, $"{what} '{name}' has element type {node.ElementDataType}, which StreamInfer does not carry.");
                continue;
            }

            var dims = node.Dimensions.Select(d => (long)d).ToArray();
            var axes = new string?[dims.Length];
            for (var k = 0; k < dims.Length; k++)
            {
                if (dims[k] < 0)
                {
                    dims[k] = -1;
                    var symbol = k < node.SymbolicDimensions.Length ? node.SymbolicDimensions[k] : null;
                    axes[k] = string.IsNullOrEmpty(symbol) ? $"{name}:{k}" : symbol;
                }
            }

            slots.Add(new TensorSlot(name, type, node.ElementDataType, dims, axes));
        }

        return slots;
    }

    private static void Refine(List<TensorSlot> slots, List<TensorDeclaration>? declarations, string field, string what, Action<string?, string> error, Dictionary<(string Input, int Axis), long> maxima)
    {
        if (declarations is null)
        {
            return;
        }

        for (var i = 0; i < declarations.Count; i++)
        {
            var d = declarations[i];
            var at = $"{field}[{i}]";
            var index = slots.FindIndex(s => s.Name == d.Name);
            if (index < 0)
            {
                error($"{at}.name", $"the model has no {what} '{d.Name}' (it has {string.Join(", ", slots.Select(s => s.Name))}).");
                continue;
            }

            var slot = slots[index];
            if (d.Datatype is not null && TensorTypes.TryParse(d.Datatype, out var declaredType) && declaredType != slot.Type)
            {
                error($"{at}.datatype", $"declares {declaredType.ToWire()}, but the model's {what} '{slot.Name}' is {slot.Type.ToWire()}.");
            }

            var batchAxis = d.Shared == true ? TensorSlot.SharedAxis : d.BatchAxis ?? 0;
            if (batchAxis != 0 && slot.Rank > 0 && batchAxis >= slot.Rank)
            {
                error($"{at}.batch_axis", $"is {batchAxis}, but the model's {what} '{slot.Name}' has {slot.Rank} axes.");
                continue;
            }

            slots[index] = slot = slot with { BatchAxis = batchAxis };
            if (d.Warmup is not null && (what != "input" || slot.Type == TensorElementType.String))
            {
                error($"{at}.warmup", $"gives the value of a numeric or bool input in the warm-up run; {what} '{slot.Name}' is not one.");
            }

            if (d.Dims is not { } dims)
            {
                continue;
            }

            // dims lists the model's axes in order with the batch axis left out (all of them for a shared input).
            var own = slot.Shared ? slot.Rank : slot.Rank - 1;
            if (dims.Count != own)
            {
                error($"{at}.dims", slot.Shared
                    ? $"declares {dims.Count} dimensions, but the model's {what} '{slot.Name}' has {own}."
                    : $"declares {dims.Count} dimensions besides the batch axis, but the model's {what} '{slot.Name}' has {own}.");
                continue;
            }

            var newDims = (long[])slot.Dims.Clone();
            var newAxes = (string?[])slot.Axes.Clone();
            for (var k = 0; k < dims.Count; k++)
            {
                var axis = slot.Shared || k < slot.BatchAxis ? k : k + 1;
                var modelFixed = slot.Dims[axis] >= 0;
                if (dims[k].ValueKind == JsonValueKind.String)
                {
                    if (modelFixed)
                    {
                        error($"{at}.dims[{k}]", $"names a dynamic axis, but the model fixes it at {slot.Dims[axis]}.");
                    }

                    newAxes[axis] = dims[k].GetString();
                }
                else if (dims[k].ValueKind == JsonValueKind.Object)
                {
                    if (modelFixed)
                    {
                        error($"{at}.dims[{k}]", $"declares a dynamic axis, but the model fixes it at {slot.Dims[axis]}.");
                    }

                    if (dims[k].TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String)
                    {
                        newAxes[axis] = name.GetString();
                    }

                    if (dims[k].TryGetProperty("max", out var max) && max.ValueKind == JsonValueKind.Number && max.TryGetInt64(out var bound))
                    {
                        if (what == "input")
                        {
                            maxima[(slot.Name, axis)] = bound;
                        }
                        else
                        {
                            error($"{at}.dims[{k}].max", "bounds what a request sends, so it applies to inputs only.");
                        }
                    }
                }
                else if (dims[k].TryGetInt64(out var size) && size >= 0)
                {
                    if (modelFixed && size != slot.Dims[axis])
                    {
                        error($"{at}.dims[{k}]", $"declares {size}, but the model fixes it at {slot.Dims[axis]}.");
                    }

                    newDims[axis] = size;
                    newAxes[axis] = null;
                }
                else if (modelFixed)
                {
                    error($"{at}.dims[{k}]", $"declares a dynamic axis, but the model fixes it at {slot.Dims[axis]}.");
                }
            }

            slots[index] = slot with { Dims = newDims, Axes = newAxes };
        }
    }

    private static void CheckBatchAxis(TensorSlot slot, string what, int maxBatchSize, Action<string?, string> error)
    {
        if (slot.Shared)
        {
            for (var k = 0; k < slot.Rank; k++)
            {
                if (slot.Dims[k] < 0)
                {
                    error(null, $"axis {k} of shared {what} '{slot.Name}' is dynamic; a shared input has a fixed shape (give it in \"dims\").");
                }
            }

            return;
        }

        var b = slot.BatchAxis;
        var which = b == 0 ? "the first axis" : $"axis {b}";
        if (slot.Rank == 0)
        {
            error(null, $"{what} '{slot.Name}' is a scalar; a tensor model carries the batch on an axis of every input and output (declare a scalar input \"shared\": true).");
        }
        else if (slot.Dims[b] >= 0 && !(slot.Dims[b] == 1 && maxBatchSize == 1))
        {
            error(null, $"{which} of {what} '{slot.Name}' is fixed at {slot.Dims[b]}, so it cannot carry a batch (set its \"batch_axis\", or max_batch_size to 1 for a model fixed at 1).");
        }
    }

    /// <summary>Maps ONNX Runtime's element type to the wire's.</summary>
    public static bool TryMap(OrtType type, out TensorElementType mapped)
    {
        mapped = type switch
        {
            OrtType.Float => TensorElementType.Float32,
            OrtType.Float16 => TensorElementType.Float16,
            OrtType.Double => TensorElementType.Float64,
            OrtType.Int64 => TensorElementType.Int64,
            OrtType.Int32 => TensorElementType.Int32,
            OrtType.Int16 => TensorElementType.Int16,
            OrtType.Int8 => TensorElementType.Int8,
            OrtType.UInt8 => TensorElementType.UInt8,
            OrtType.Bool => TensorElementType.Bool,
            OrtType.String => TensorElementType.String,
            _ => (TensorElementType)(-1),
        };
        return (int)mapped >= 0;
    }
}
