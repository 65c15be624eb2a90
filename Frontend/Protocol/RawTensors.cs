using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Text;

namespace StreamInfer.Frontend.Protocol;

/// <summary>
/// Tensors as raw bytes, the one layout every binary transport shares (the KServe v2 binary extension, gRPC's
/// <c>raw_input_contents</c>/<c>raw_output_contents</c>, binary WebSocket frames): numbers little-endian, row-major;
/// BOOL one byte per element (0 or 1); BYTES each element as a 4-byte little-endian length and then its bytes. Numeric
/// tensors are read without a copy: the tensor's data is a slice of the caller's buffer. A tensor's size in this layout is
/// <see cref="TensorTypes.RawByteSize"/>.
/// </summary>
internal static class RawTensors
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Reads a tensor of <paramref name="type"/> and <paramref name="shape"/> from exactly <paramref name="bytes"/>.
    /// Returns null with the tensor, or a message naming <paramref name="name"/> and what does not add up.
    /// </summary>
    public static string? TryRead(string name, TensorElementType type, ImmutableArray<long> shape, ReadOnlyMemory<byte> bytes, out Tensor? tensor)
    {
        tensor = null;
        if (TensorTypes.ElementCount(shape) is not { } count)
        {
            return TensorTypes.ShapeRefusal(name, shape);
        }

        if (type == TensorElementType.String)
        {
            return TryReadStrings(name, shape, count, bytes.Span, out tensor);
        }

        var size = type.ElementSize();
        if (count * size != bytes.Length)
        {
            return $"input '{name}': shape [{string.Join(',', shape)}] of {type.ToKServe()} needs {count * size} bytes, {bytes.Length} were given.";
        }

        if (type == TensorElementType.Bool && bytes.Span.IndexOfAnyExcept((byte)0, (byte)1) is var bad and >= 0)
        {
            return $"input '{name}': BOOL element {bad} is {bytes.Span[bad]}; each must be one byte, 0 or 1.";
        }

        tensor = new Tensor(type, shape, bytes, []);
        return null;
    }

    /// <summary>Writes <paramref name="tensor"/> in the raw layout: one copy of numeric data, no per-element work.</summary>
    public static void Write(Tensor tensor, IBufferWriter<byte> into)
    {
        if (tensor.ElementType != TensorElementType.String)
        {
            into.Write(tensor.Data.Span);
            return;
        }

        foreach (var s in tensor.Strings)
        {
            var length = Encoding.UTF8.GetByteCount(s);
            var span = into.GetSpan(4 + length);
            BinaryPrimitives.WriteInt32LittleEndian(span, length);
            Encoding.UTF8.GetBytes(s, span[4..]);
            into.Advance(4 + length);
        }
    }

    private static string? TryReadStrings(string name, ImmutableArray<long> shape, long count, ReadOnlySpan<byte> bytes, out Tensor? tensor)
    {
        tensor = null;
        var strings = ImmutableArray.CreateBuilder<string>((int)Math.Min(count, bytes.Length / 4 + 1));
        var offset = 0;
        while (offset < bytes.Length)
        {
            if (strings.Count == count)
            {
                return $"input '{name}': shape [{string.Join(',', shape)}] holds {count} BYTES elements, but {bytes.Length - offset} bytes follow the last of them.";
            }

            if (bytes.Length - offset < 4)
            {
                return $"input '{name}': BYTES element {strings.Count} needs a 4-byte length; {bytes.Length - offset} bytes are left.";
            }

            var length = BinaryPrimitives.ReadUInt32LittleEndian(bytes[offset..]);
            offset += 4;
            if (length > (uint)(bytes.Length - offset))
            {
                return $"input '{name}': BYTES element {strings.Count} declares {length} bytes; {bytes.Length - offset} are left.";
            }

            try
            {
                strings.Add(StrictUtf8.GetString(bytes.Slice(offset, (int)length)));
            }
            catch (DecoderFallbackException)
            {
                return $"input '{name}': BYTES element {strings.Count} is not UTF-8 text (ONNX Runtime's string tensors carry text).";
            }

            offset += (int)length;
        }

        if (strings.Count != count)
        {
            return $"input '{name}': shape [{string.Join(',', shape)}] needs {count} BYTES elements, {strings.Count} were given.";
        }

        tensor = new Tensor(TensorElementType.String, shape, ReadOnlyMemory<byte>.Empty, strings.ToImmutable());
        return null;
    }
}
