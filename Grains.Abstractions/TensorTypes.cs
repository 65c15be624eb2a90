using System.Collections.Immutable;
using System.Globalization;

namespace StreamInfer;

/// <summary>Wire names (<c>dtype</c> in docs/protocol.md) and element sizes of <see cref="TensorElementType"/>.</summary>
public static class TensorTypes
{
    /// <summary>The wire name, e.g. <c>float32</c>.</summary>
    public static string ToWire(this TensorElementType type) => type switch
    {
        TensorElementType.Float32 => "float32",
        TensorElementType.Float16 => "float16",
        TensorElementType.Float64 => "float64",
        TensorElementType.Int64 => "int64",
        TensorElementType.Int32 => "int32",
        TensorElementType.Int16 => "int16",
        TensorElementType.Int8 => "int8",
        TensorElementType.UInt8 => "uint8",
        TensorElementType.Bool => "bool",
        TensorElementType.String => "string",
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    /// <summary>The KServe v2 / Open Inference Protocol name, e.g. <c>FP32</c>, <c>BYTES</c>.</summary>
    public static string ToKServe(this TensorElementType type) => type switch
    {
        TensorElementType.Float32 => "FP32",
        TensorElementType.Float16 => "FP16",
        TensorElementType.Float64 => "FP64",
        TensorElementType.Int64 => "INT64",
        TensorElementType.Int32 => "INT32",
        TensorElementType.Int16 => "INT16",
        TensorElementType.Int8 => "INT8",
        TensorElementType.UInt8 => "UINT8",
        TensorElementType.Bool => "BOOL",
        TensorElementType.String => "BYTES",
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    /// <summary>Parses a wire name; also accepts the KServe v2 names (<c>FP32</c>, <c>INT64</c>, <c>BOOL</c>, <c>BYTES</c>...).</summary>
    public static bool TryParse(string? name, out TensorElementType type)
    {
        switch (name?.ToLowerInvariant())
        {
            case "float32" or "fp32" or "float": type = TensorElementType.Float32; return true;
            case "float16" or "fp16": type = TensorElementType.Float16; return true;
            case "float64" or "fp64" or "double": type = TensorElementType.Float64; return true;
            case "int64": type = TensorElementType.Int64; return true;
            case "int32": type = TensorElementType.Int32; return true;
            case "int16": type = TensorElementType.Int16; return true;
            case "int8": type = TensorElementType.Int8; return true;
            case "uint8": type = TensorElementType.UInt8; return true;
            case "bool": type = TensorElementType.Bool; return true;
            case "string" or "bytes": type = TensorElementType.String; return true;
            default: type = default; return false;
        }
    }

    /// <summary>Bytes per element in <see cref="Tensor.Data"/>; 0 for strings, which travel in <see cref="Tensor.Strings"/>.</summary>
    public static int ElementSize(this TensorElementType type) => type switch
    {
        TensorElementType.Float64 or TensorElementType.Int64 => 8,
        TensorElementType.Float32 or TensorElementType.Int32 => 4,
        TensorElementType.Float16 or TensorElementType.Int16 => 2,
        TensorElementType.Int8 or TensorElementType.UInt8 or TensorElementType.Bool => 1,
        _ => 0,
    };

    /// <summary>
    /// The bytes <paramref name="tensor"/> takes in the raw layout the binary transports share: numbers as their bytes,
    /// each string as its UTF-8 bytes plus the 4-byte length that precedes it.
    /// </summary>
    public static long RawByteSize(this Tensor tensor)
    {
        long bytes = tensor.Data.Length;
        if (tensor.ElementType == TensorElementType.String && !tensor.Strings.IsDefault)
        {
            foreach (var s in tensor.Strings)
            {
                bytes += 4 + System.Text.Encoding.UTF8.GetByteCount(s);
            }
        }

        return bytes;
    }

    /// <summary>
    /// The most elements a tensor's shape may describe, counting only its non-zero dimensions: every buffer and every
    /// index downstream is sized in 32 bits, so a larger shape is refused where it enters rather than wrapping around.
    /// </summary>
    public const long MaxElements = int.MaxValue;

    /// <summary>
    /// The number of elements <paramref name="shape"/> holds, or null when a dimension is negative or the product passes
    /// <see cref="MaxElements"/>. A zero dimension makes the tensor empty but does not excuse the others: the product of
    /// the non-zero dimensions must fit too, so that no axis downstream is sized past what memory holds.
    /// </summary>
    public static long? ElementCount(ImmutableArray<long> shape)
    {
        if (shape.IsDefault)
        {
            return null;
        }

        long nonZero = 1;
        var empty = false;
        foreach (var d in shape)
        {
            if (d < 0)
            {
                return null;
            }

            if (d == 0)
            {
                empty = true;
                continue;
            }

            if (nonZero > MaxElements / d)
            {
                return null;
            }

            nonZero *= d;
        }

        return empty ? 0 : nonZero;
    }

    /// <summary>The message that refuses a shape <see cref="ElementCount(ImmutableArray{long})"/> has no count for.</summary>
    public static string ShapeRefusal(string name, ImmutableArray<long> shape)
        => string.Create(CultureInfo.InvariantCulture, $"input '{name}': shape [{(shape.IsDefault ? string.Empty : string.Join(',', shape))}] must be non-negative integers whose product (zero dimensions aside) is at most {MaxElements} elements, so that it fits in memory.");

    /// <summary>
    /// Checks that a tensor's payload matches its shape and type. Returns null when consistent, else a message that
    /// names the input.
    /// </summary>
    public static string? CheckConsistent(string name, Tensor tensor)
    {
        if (tensor.ElementCount is not { } count)
        {
            return ShapeRefusal(name, tensor.Shape);
        }

        if (tensor.ElementType == TensorElementType.String)
        {
            return tensor.Strings.IsDefault || tensor.Strings.Length != count
                ? $"input '{name}': shape [{string.Join(',', tensor.Shape)}] needs {count} elements, data has {(tensor.Strings.IsDefault ? 0 : tensor.Strings.Length)}."
                : null;
        }

        var size = tensor.ElementType.ElementSize();
        return (long)tensor.Data.Length != count * size
            ? $"input '{name}': shape [{string.Join(',', tensor.Shape)}] needs {count} elements, data has {(long)tensor.Data.Length / Math.Max(size, 1)}."
            : null;
    }
}
