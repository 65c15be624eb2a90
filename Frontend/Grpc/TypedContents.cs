using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Runtime.InteropServices;
using System.Text;
using Google.Protobuf;
using StreamInfer.Frontend.Grpc.V2;

namespace StreamInfer.Frontend.Grpc;

/// <summary>
/// Tensors as <see cref="InferTensorContents"/>, the typed form: one repeated field per datatype family (INT8, INT16
/// and INT32 share <c>int_contents</c>; UINT8 is in <c>uint_contents</c>). FP16 has no field of its own: an FP16 input
/// may come in <c>fp32_contents</c> (each value rounded to half precision), an FP16 output is only ever raw.
/// </summary>
internal static class TypedContents
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The bytes <paramref name="contents"/>' elements hold in memory as parsed (every field: a varint of one
    /// byte on the wire is eight here as an INT64).</summary>
    public static long HeldBytes(InferTensorContents? contents) => contents is null ? 0 :
        contents.BoolContents.Count
        + (4L * (contents.IntContents.Count + contents.UintContents.Count + contents.Fp32Contents.Count))
        + (8L * (contents.Int64Contents.Count + contents.Uint64Contents.Count + contents.Fp64Contents.Count))
        + contents.BytesContents.Sum(b => (long)b.Length);

    /// <summary>The bytes an input of <paramref name="type"/> decodes to from <paramref name="contents"/>: its field's
    /// elements at the datatype's size (BYTES: their UTF-8 lengths).</summary>
    public static long DecodedBytes(TensorElementType type, InferTensorContents? contents)
    {
        if (contents is null)
        {
            return 0;
        }

        return type == TensorElementType.String
            ? contents.BytesContents.Sum(b => (long)b.Length)
            : (long)Field(type, contents).Count * type.ElementSize();
    }

    /// <summary>Whether <paramref name="type"/> has a typed field for outputs (every served type but FP16).</summary>
    public static bool HasField(TensorElementType type) => type != TensorElementType.Float16;

    /// <summary>
    /// Reads an input of <paramref name="type"/> and <paramref name="shape"/> from its typed contents. Returns null with
    /// the tensor, or a message naming <paramref name="name"/> and what is wrong.
    /// </summary>
    public static string? TryRead(string name, TensorElementType type, ImmutableArray<long> shape, InferTensorContents? contents, out Tensor? tensor)
    {
        tensor = null;
        if (TensorTypes.ElementCount(shape) is not { } count)
        {
            return TensorTypes.ShapeRefusal(name, shape);
        }

        contents ??= new InferTensorContents();
        var (field, given) = Field(type, contents);
        if (given != count)
        {
            return $"input '{name}': shape [{string.Join(',', shape)}] needs {count} elements in contents.{field}, {given} were given.";
        }

        if (type == TensorElementType.String)
        {
            var strings = ImmutableArray.CreateBuilder<string>(contents.BytesContents.Count);
            foreach (var element in contents.BytesContents)
            {
                try
                {
                    strings.Add(StrictUtf8.GetString(element.Span));
                }
                catch (DecoderFallbackException)
                {
                    return $"input '{name}': BYTES element {strings.Count} is not UTF-8 text (ONNX Runtime's string tensors carry text).";
                }
            }

            tensor = new Tensor(type, shape, ReadOnlyMemory<byte>.Empty, strings.MoveToImmutable());
            return null;
        }

        var data = new byte[count * type.ElementSize()];
        if (Fill(type, contents, data) is { } bad)
        {
            return $"input '{name}': element {bad} of contents.{field} is out of range for {type.ToKServe()}.";
        }

        tensor = new Tensor(type, shape, data, []);
        return null;
    }

    /// <summary>Writes <paramref name="tensor"/>'s elements into the typed field of its datatype (not FP16).</summary>
    public static InferTensorContents Write(Tensor tensor)
    {
        var contents = new InferTensorContents();
        var span = tensor.Data.Span;
        switch (tensor.ElementType)
        {
            case TensorElementType.Float32:
                contents.Fp32Contents.AddRange(MemoryMarshal.Cast<byte, float>(span).ToArray());
                break;
            case TensorElementType.Float64:
                contents.Fp64Contents.AddRange(MemoryMarshal.Cast<byte, double>(span).ToArray());
                break;
            case TensorElementType.Int64:
                contents.Int64Contents.AddRange(MemoryMarshal.Cast<byte, long>(span).ToArray());
                break;
            case TensorElementType.Int32:
                contents.IntContents.AddRange(MemoryMarshal.Cast<byte, int>(span).ToArray());
                break;
            case TensorElementType.Int16:
                foreach (var v in MemoryMarshal.Cast<byte, short>(span))
                {
                    contents.IntContents.Add(v);
                }

                break;
            case TensorElementType.Int8:
                foreach (var v in MemoryMarshal.Cast<byte, sbyte>(span))
                {
                    contents.IntContents.Add(v);
                }

                break;
            case TensorElementType.UInt8:
                foreach (var v in span)
                {
                    contents.UintContents.Add(v);
                }

                break;
            case TensorElementType.Bool:
                foreach (var v in span)
                {
                    contents.BoolContents.Add(v != 0);
                }

                break;
            case TensorElementType.String:
                foreach (var s in tensor.Strings)
                {
                    contents.BytesContents.Add(ByteString.CopyFromUtf8(s));
                }

                break;
            default:
                throw new ArgumentException($"{tensor.ElementType.ToKServe()} has no typed contents.", nameof(tensor));
        }

        return contents;
    }

    /// <summary>The typed field that holds <paramref name="type"/>'s elements and how many it holds.</summary>
    private static (string Field, int Count) Field(TensorElementType type, InferTensorContents c) => type switch
    {
        TensorElementType.Float32 or TensorElementType.Float16 => ("fp32_contents", c.Fp32Contents.Count),
        TensorElementType.Float64 => ("fp64_contents", c.Fp64Contents.Count),
        TensorElementType.Int64 => ("int64_contents", c.Int64Contents.Count),
        TensorElementType.Int32 or TensorElementType.Int16 or TensorElementType.Int8 => ("int_contents", c.IntContents.Count),
        TensorElementType.UInt8 => ("uint_contents", c.UintContents.Count),
        TensorElementType.Bool => ("bool_contents", c.BoolContents.Count),
        _ => ("bytes_contents", c.BytesContents.Count),
    };

    /// <summary>Writes the typed elements little-endian into <paramref name="data"/>; the index of one out of range, or null.</summary>
    private static int? Fill(TensorElementType type, InferTensorContents c, Span<byte> data)
    {
        switch (type)
        {
            case TensorElementType.Float32:
                for (var i = 0; i < c.Fp32Contents.Count; i++)
                {
                    BinaryPrimitives.WriteSingleLittleEndian(data[(i * 4)..], c.Fp32Contents[i]);
                }

                return null;
            case TensorElementType.Float16:
                for (var i = 0; i < c.Fp32Contents.Count; i++)
                {
                    if (Math.Abs(c.Fp32Contents[i]) > (float)Half.MaxValue)
                    {
                        return i;
                    }

                    BinaryPrimitives.WriteHalfLittleEndian(data[(i * 2)..], (Half)c.Fp32Contents[i]);
                }

                return null;
            case TensorElementType.Float64:
                for (var i = 0; i < c.Fp64Contents.Count; i++)
                {
                    BinaryPrimitives.WriteDoubleLittleEndian(data[(i * 8)..], c.Fp64Contents[i]);
                }

                return null;
            case TensorElementType.Int64:
                for (var i = 0; i < c.Int64Contents.Count; i++)
                {
                    BinaryPrimitives.WriteInt64LittleEndian(data[(i * 8)..], c.Int64Contents[i]);
                }

                return null;
            case TensorElementType.Int32:
                for (var i = 0; i < c.IntContents.Count; i++)
                {
                    BinaryPrimitives.WriteInt32LittleEndian(data[(i * 4)..], c.IntContents[i]);
                }

                return null;
            case TensorElementType.Int16:
                for (var i = 0; i < c.IntContents.Count; i++)
                {
                    if (c.IntContents[i] is < short.MinValue or > short.MaxValue)
                    {
                        return i;
                    }

                    BinaryPrimitives.WriteInt16LittleEndian(data[(i * 2)..], (short)c.IntContents[i]);
                }

                return null;
            case TensorElementType.Int8:
                for (var i = 0; i < c.IntContents.Count; i++)
                {
                    if (c.IntContents[i] is < sbyte.MinValue or > sbyte.MaxValue)
                    {
                        return i;
                    }

                    data[i] = unchecked((byte)(sbyte)c.IntContents[i]);
                }

                return null;
            case TensorElementType.UInt8:
                for (var i = 0; i < c.UintContents.Count; i++)
                {
                    if (c.UintContents[i] > byte.MaxValue)
                    {
                        return i;
                    }

                    data[i] = (byte)c.UintContents[i];
                }

                return null;
            case TensorElementType.Bool:
                for (var i = 0; i < c.BoolContents.Count; i++)
                {
                    data[i] = c.BoolContents[i] ? (byte)1 : (byte)0;
                }

                return null;
            default:
                return null;
        }
    }
}
