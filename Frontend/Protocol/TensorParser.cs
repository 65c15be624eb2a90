using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Text.Json;

namespace StreamInfer.Frontend.Protocol;

/// <summary>Parses the tensors of a request's <c>inputs</c>; every failure is a message that names the input at fault.</summary>
internal static class TensorParser
{
    /// <summary>
    /// Parses <c>inputs</c> in either form: an object of named tensors (<c>{"x": {"dtype", "shape", "data"}}</c>) or
    /// the KServe v2 array (<c>[{"name", "datatype", "shape", "data"}]</c>). <paramref name="parseTensor"/> reads each
    /// tensor in place of <see cref="ParseTensor"/> (a binary request's tensors name bytes instead of carrying data).
    /// </summary>
    internal static (ImmutableArray<NamedTensor> Inputs, string? Error) ParseInputs(JsonElement inputsElement, Func<string, JsonElement, (Tensor? Tensor, string? Error)>? parseTensor = null)
    {
        parseTensor ??= ParseTensor;
        var builder = ImmutableArray.CreateBuilder<NamedTensor>();
        string? Add(string name, JsonElement tensorElement)
        {
            if (builder.Any(t => t.Name == name))
            {
                return $"input '{name}' is given more than once.";
            }

            var (tensor, error) = parseTensor(name, tensorElement);
            if (error is not null)
            {
                return error;
            }

            builder.Add(new NamedTensor(name, tensor!));
            return null;
        }

        if (inputsElement.ValueKind == JsonValueKind.Object)
        {
            foreach (var property in inputsElement.EnumerateObject())
            {
                if (Add(property.Name, property.Value) is { } error)
                {
                    return (default, error);
                }
            }
        }
        else if (inputsElement.ValueKind == JsonValueKind.Array)
        {
            var index = 0;
            foreach (var item in inputsElement.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("name", out var nameElement)
                    || nameElement.ValueKind != JsonValueKind.String || nameElement.GetString() is not { Length: > 0 } name)
                {
                    return (default, $"inputs[{index}] must be a tensor object with a non-empty 'name'.");
                }

                if (Add(name, item) is { } error)
                {
                    return (default, error);
                }

                index++;
            }
        }
        else
        {
            return (default, "'inputs' must be an object of named tensors or an array of tensors with names.");
        }

        return (builder.ToImmutable(), null);
    }

    /// <summary>Parses <c>{"dtype": "...", "shape": [...], "data": [...]}</c>; <c>data</c> may be flat or nested.</summary>
    internal static (Tensor? Tensor, string? Error) ParseTensor(string name, JsonElement element)
    {
        if (ParseTypeAndShape(name, element, out var type, out var shape) is { } headerError)
        {
            return (null, headerError);
        }

        if (TensorTypes.ElementCount(shape) is not { } count)
        {
            return (null, TensorTypes.ShapeRefusal(name, shape));
        }

        if (!element.TryGetProperty("data", out var dataElement) || dataElement.ValueKind != JsonValueKind.Array)
        {
            return (null, $"input '{name}': 'data' must be an array.");
        }

        var values = new List<JsonElement>();
        if (Flatten(dataElement, shape, values) is { } ragged)
        {
            return (null, $"input '{name}': nested 'data' must follow shape [{string.Join(',', shape)}]: {ragged}");
        }

        if (values.Count != count)
        {
            return (null, $"input '{name}': shape [{string.Join(',', shape)}] needs {count} elements, data has {values.Count}.");
        }

        if (type == TensorElementType.String)
        {
            var strings = ImmutableArray.CreateBuilder<string>(values.Count);
            for (var i = 0; i < values.Count; i++)
            {
                if (values[i].ValueKind != JsonValueKind.String)
                {
                    return (null, ElementError(name, i, type, values[i]));
                }

                strings.Add(values[i].GetString()!);
            }

            return (new Tensor(type, shape, ReadOnlyMemory<byte>.Empty, strings.MoveToImmutable()), null);
        }

        var size = type.ElementSize();
        var data = new byte[values.Count * size];
        for (var i = 0; i < values.Count; i++)
        {
            if (!TryWriteElement(type, values[i], data.AsSpan(i * size, size)))
            {
                return (null, ElementError(name, i, type, values[i]));
            }
        }

        return (new Tensor(type, shape, data, []), null);
    }

    /// <summary>Reads a tensor's <c>dtype</c> (or <c>datatype</c>) and <c>shape</c>; null, or a message naming the input.</summary>
    internal static string? ParseTypeAndShape(string name, JsonElement element, out TensorElementType type, out ImmutableArray<long> shape)
    {
        type = default;
        shape = default;
        if (element.ValueKind != JsonValueKind.Object)
        {
            return $"input '{name}': a tensor must be an object with 'dtype' (or 'datatype'), 'shape' and 'data'.";
        }

        if (!element.TryGetProperty("dtype", out var dtypeElement) && !element.TryGetProperty("datatype", out dtypeElement))
        {
            return $"input '{name}': 'dtype' is missing.";
        }

        if (!TensorTypes.TryParse(dtypeElement.ValueKind == JsonValueKind.String ? dtypeElement.GetString() : null, out type))
        {
            return $"input '{name}': unknown dtype {dtypeElement.GetRawText()} (known: float32, float16, float64, int64, int32, int16, int8, uint8, bool, string).";
        }

        if (!element.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
        {
            return $"input '{name}': 'shape' must be an array of non-negative integers.";
        }

        var dims = ImmutableArray.CreateBuilder<long>(shapeElement.GetArrayLength());
        foreach (var d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var dim) || dim < 0)
            {
                return $"input '{name}': 'shape' must be an array of non-negative integers; got {shapeElement.GetRawText()}.";
            }

            dims.Add(dim);
        }

        shape = dims.MoveToImmutable();
        return null;
    }

    /// <summary>
    /// Collects the elements of <c>data</c>: flat (row-major), or nested exactly as the shape is, every array at depth k
    /// holding shape[k] items and elements only at the innermost depth. Returns why nested data does not follow the
    /// shape (ragged, too deep or too shallow), or null.
    /// </summary>
    private static string? Flatten(JsonElement data, ImmutableArray<long> shape, List<JsonElement> into)
    {
        var nested = false;
        foreach (var item in data.EnumerateArray())
        {
            if (item.ValueKind == JsonValueKind.Array)
            {
                nested = true;
                break;
            }
        }

        if (!nested)
        {
            foreach (var item in data.EnumerateArray())
            {
                into.Add(item);
            }

            return null;
        }

        return FlattenNested(data, shape, 0, "data", into);
    }

    private static string? FlattenNested(JsonElement array, ImmutableArray<long> shape, int depth, string at, List<JsonElement> into)
    {
        if (depth >= shape.Length)
        {
            return $"{at} is an array, deeper than the shape's {shape.Length} axes.";
        }

        var length = array.GetArrayLength();
        if (length != shape[depth])
        {
            return $"{at} holds {length} items where axis {depth} is {shape[depth]}.";
        }

        var index = 0;
        foreach (var item in array.EnumerateArray())
        {
            var isArray = item.ValueKind == JsonValueKind.Array;
            var innermost = depth == shape.Length - 1;
            if (isArray)
            {
                if (FlattenNested(item, shape, depth + 1, $"{at}[{index}]", into) is { } error)
                {
                    return error;
                }
            }
            else if (!innermost)
            {
                return $"{at}[{index}] is not an array, but axis {depth + 1} is still to come.";
            }
            else
            {
                into.Add(item);
            }

            index++;
        }

        return null;
    }

    private static bool TryWriteElement(TensorElementType type, JsonElement value, Span<byte> into)
    {
        if (type == TensorElementType.Bool)
        {
            if (value.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return false;
            }

            into[0] = value.ValueKind == JsonValueKind.True ? (byte)1 : (byte)0;
            return true;
        }

        if (value.ValueKind != JsonValueKind.Number)
        {
            return false;
        }

        switch (type)
        {
            case TensorElementType.Float32 when value.TryGetSingle(out var f) && float.IsFinite(f):
                BinaryPrimitives.WriteSingleLittleEndian(into, f);
                return true;
            case TensorElementType.Float64 when value.TryGetDouble(out var d) && double.IsFinite(d):
                BinaryPrimitives.WriteDoubleLittleEndian(into, d);
                return true;
            case TensorElementType.Float16 when value.TryGetDouble(out var h) && Math.Abs(h) <= 65504:
                BinaryPrimitives.WriteHalfLittleEndian(into, (Half)h);
                return true;
            case TensorElementType.Int64 when value.TryGetInt64(out var l):
                BinaryPrimitives.WriteInt64LittleEndian(into, l);
                return true;
            case TensorElementType.Int32 when value.TryGetInt32(out var i):
                BinaryPrimitives.WriteInt32LittleEndian(into, i);
                return true;
            case TensorElementType.Int16 when value.TryGetInt16(out var s):
                BinaryPrimitives.WriteInt16LittleEndian(into, s);
                return true;
            case TensorElementType.Int8 when value.TryGetSByte(out var sb):
                into[0] = unchecked((byte)sb);
                return true;
            case TensorElementType.UInt8 when value.TryGetByte(out var b):
                into[0] = b;
                return true;
            default:
                return false;
        }
    }

    private static string ElementError(string name, int index, TensorElementType type, JsonElement value)
    {
        var raw = value.GetRawText();
        return $"input '{name}': element {index} ({(raw.Length > 32 ? raw[..32] + "..." : raw)}) is not a valid {type.ToWire()}.";
    }

    /// <summary>Names a JSON value's kind, for an error message.</summary>
    internal static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };
}
