using System.Collections.Immutable;
using System.Text.Json;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.KServe;

/// <summary>
/// The <c>inputs</c> of a KServe v2 request: each one's data either in the JSON (<c>data</c>) or, with
/// <c>"parameters": {"binary_data_size": n}</c>, as the next n bytes of the binary data that follows the JSON header,
/// in input order (the binary tensor data extension). Binary inputs are slices of the body: no copy, no per-element work.
/// </summary>
internal static class KServeInputs
{
    private const string Known = "FP32, FP16, FP64, INT64, INT32, INT16, INT8, UINT8, BOOL, BYTES";

    /// <summary>
    /// Parses <paramref name="inputsElement"/>, reading binary inputs from <paramref name="binary"/> (the bytes after the
    /// JSON header; <paramref name="hasBinary"/> when the request has a header at all). <c>ReadsBody</c> when some
    /// input is a slice of <paramref name="binary"/>.
    /// </summary>
    public static (ImmutableArray<NamedTensor> Inputs, bool ReadsBody, InferError? Error) Parse(JsonElement inputsElement, ReadOnlyMemory<byte> binary, bool hasBinary)
    {
        var entries = new List<(string Name, JsonElement Element, long? Size)>();
        long binaryTotal = 0;
        var index = 0;
        foreach (var item in inputsElement.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("name", out var nameElement)
                || nameElement.ValueKind != JsonValueKind.String || nameElement.GetString() is not { Length: > 0 } name)
            {
                return Invalid($"inputs[{index}] must be a tensor object with a non-empty 'name'.");
            }

            if (entries.Exists(e => e.Name == name))
            {
                return Invalid($"input '{name}' is given more than once.");
            }

            var (size, error) = BinarySize(name, item);
            if (error is not null)
            {
                return Invalid(error);
            }

            if (size is { } s)
            {
                if (!hasBinary)
                {
                    return Fail(ErrorCode.BadRequest, $"input '{name}' has binary_data_size, but the request has no {KServeBody.HeaderName} header to say where its JSON ends.");
                }

                // Checked against what is left rather than summed first: a sum of huge sizes could wrap around.
                if (s > binary.Length - binaryTotal)
                {
                    return Fail(ErrorCode.BadRequest, $"input '{name}' has binary_data_size {s}, but only {binary.Length - binaryTotal} of the {binary.Length} bytes after the JSON header are left for it.");
                }

                binaryTotal += s;
            }

            entries.Add((name, item, size));
            index++;
        }

        if (binaryTotal != binary.Length)
        {
            return Fail(ErrorCode.BadRequest, $"the inputs' binary_data_size add up to {binaryTotal} bytes, but {binary.Length} bytes follow the JSON header.");
        }

        var inputs = ImmutableArray.CreateBuilder<NamedTensor>(entries.Count);
        var offset = 0;
        foreach (var (name, element, size) in entries)
        {
            Tensor? tensor;
            if (size is { } s)
            {
                var error = ReadBinary(name, element, binary.Slice(offset, (int)s), out tensor);
                if (error is not null)
                {
                    return Invalid(error);
                }

                offset += (int)s;
            }
            else
            {
                (tensor, var error) = TensorParser.ParseTensor(name, element);
                if (error is not null)
                {
                    return Invalid(error);
                }
            }

            inputs.Add(new NamedTensor(name, tensor!));
        }

        return (inputs.MoveToImmutable(), binaryTotal > 0, null);
    }

    /// <summary>The input's <c>binary_data_size</c>, null when it has none; an error when it is not a byte count or
    /// the input also carries <c>data</c>.</summary>
    private static (long? Size, string? Error) BinarySize(string name, JsonElement input)
    {
        if (!input.TryGetProperty("parameters", out var parameters) || parameters.ValueKind == JsonValueKind.Null)
        {
            return (null, null);
        }

        if (parameters.ValueKind != JsonValueKind.Object)
        {
            return (null, $"input '{name}': 'parameters' must be an object.");
        }

        if (!parameters.TryGetProperty("binary_data_size", out var sizeElement))
        {
            return (null, null);
        }

        if (sizeElement.ValueKind != JsonValueKind.Number || !sizeElement.TryGetInt64(out var size) || size < 0)
        {
            return (null, $"input '{name}': binary_data_size must be a non-negative integer (bytes); got {sizeElement.GetRawText()}.");
        }

        if (input.TryGetProperty("data", out _))
        {
            return (null, $"input '{name}' has both 'data' and binary_data_size; its data is either in the JSON or in the binary part, not both.");
        }

        return (size, null);
    }

    private static string? ReadBinary(string name, JsonElement element, ReadOnlyMemory<byte> bytes, out Tensor? tensor)
    {
        tensor = null;
        if (!element.TryGetProperty("datatype", out var typeElement) && !element.TryGetProperty("dtype", out typeElement))
        {
            return $"input '{name}': 'datatype' is missing.";
        }

        if (!TensorTypes.TryParse(typeElement.ValueKind == JsonValueKind.String ? typeElement.GetString() : null, out var type))
        {
            return $"input '{name}': unknown datatype {typeElement.GetRawText()} (known: {Known}).";
        }

        if (!element.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
        {
            return $"input '{name}': 'shape' must be an array of non-negative integers.";
        }

        var shape = ImmutableArray.CreateBuilder<long>(shapeElement.GetArrayLength());
        foreach (var d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var dim) || dim < 0)
            {
                return $"input '{name}': 'shape' must be an array of non-negative integers; got {shapeElement.GetRawText()}.";
            }

            shape.Add(dim);
        }

        return RawTensors.TryRead(name, type, shape.MoveToImmutable(), bytes, out tensor);
    }

    private static (ImmutableArray<NamedTensor>, bool, InferError?) Invalid(string message) => Fail(ErrorCode.InvalidInput, message);

    private static (ImmutableArray<NamedTensor>, bool, InferError?) Fail(ErrorCode code, string message) => (default, false, new InferError(code, message));
}
