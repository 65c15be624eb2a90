using System.Buffers.Binary;
using System.Text.Json;

namespace StreamInfer.LoadGen;

/// <summary>An element type the load generator can send: its WebSocket <c>dtype</c>, KServe <c>datatype</c> and size.</summary>
internal sealed record DType(string Name, string KServe, int Size)
{
    public static readonly DType[] All =
    [
        new("float32", "FP32", 4), new("float16", "FP16", 2), new("float64", "FP64", 8),
        new("int64", "INT64", 8), new("int32", "INT32", 4), new("int16", "INT16", 2), new("int8", "INT8", 1),
        new("uint8", "UINT8", 1), new("bool", "BOOL", 1),
    ];

    public static DType? Find(string name)
        => Array.Find(All, d => string.Equals(d.Name, name, StringComparison.OrdinalIgnoreCase) || string.Equals(d.KServe, name, StringComparison.OrdinalIgnoreCase));
}

/// <summary>How the tensor's values are chosen.</summary>
internal enum PayloadValues
{
    /// <summary>0, 0.5, 1, ... 7.5, 0, ... (integers 0..15, booleans alternating): exact and short in JSON.</summary>
    Pattern,

    /// <summary>
    /// Normalized pixels: a pseudo-random byte per element, as float (k/255 − 0.45)/0.225 (integers: the byte), so a
    /// JSON body is as long as a real image's.
    /// </summary>
    Image,

    /// <summary>
    /// Audio-like samples for a voice-activity model: a triangle tone (period 40 samples, amplitude 0.3) with a little
    /// hashed noise, so the chunk is loud enough to count as speech (integers: the sample times 100).
    /// </summary>
    Audio,
}

/// <summary>
/// The one input tensor every request carries: its name, type, shape and raw little-endian bytes (the layout of every
/// binary transport), and the same values as JSON numbers. An echo answer must give these bytes back.
/// </summary>
internal sealed class Payload
{
    public Payload(string name, DType type, IReadOnlyList<int> shape, PayloadValues values)
    {
        Name = name;
        Type = type;
        Shape = shape;
        var count = 1;
        foreach (var d in shape)
        {
            count *= d;
        }

        Bytes = new byte[count * type.Size];
        for (var i = 0; i < count; i++)
        {
            var k = values == PayloadValues.Pattern ? i % 16 : Pixel(i);
            var pixel = values switch
            {
                PayloadValues.Pattern => k * 0.5,
                PayloadValues.Image => ((k / 255.0) - 0.45) / 0.225,
                _ => Sample(i),
            };
            if (values == PayloadValues.Audio)
            {
                k = (int)Math.Round(pixel * 100);
            }

            var at = Bytes.AsSpan(i * type.Size);
            switch (type.Name)
            {
                case "float32": BinaryPrimitives.WriteSingleLittleEndian(at, (float)pixel); break;
                case "float16": BinaryPrimitives.WriteHalfLittleEndian(at, (Half)pixel); break;
                case "float64": BinaryPrimitives.WriteDoubleLittleEndian(at, pixel); break;
                case "int64": BinaryPrimitives.WriteInt64LittleEndian(at, k); break;
                case "int32": BinaryPrimitives.WriteInt32LittleEndian(at, k); break;
                case "int16": BinaryPrimitives.WriteInt16LittleEndian(at, (short)k); break;
                case "int8": at[0] = (byte)(sbyte)(k - (values == PayloadValues.Pattern ? 0 : 128)); break;
                case "uint8": at[0] = (byte)k; break;
                default: at[0] = (byte)(k & 1); break;
            }
        }
    }

    private Payload(string name, DType type, IReadOnlyList<int> shape, byte[] bytes)
    {
        Name = name;
        Type = type;
        Shape = shape;
        Bytes = bytes;
    }

    public string Name { get; }

    public DType Type { get; }

    public IReadOnlyList<int> Shape { get; }

    /// <summary>The tensor's raw bytes: little-endian, row-major, BOOL one byte 0 or 1.</summary>
    public byte[] Bytes { get; }

    public int ElementCount => Bytes.Length / Type.Size;

    /// <summary>Writes the values as a flat JSON array (the <c>data</c> of a JSON tensor).</summary>
    public void WriteJsonData(Utf8JsonWriter w)
    {
        w.WriteStartArray();
        for (var i = 0; i < ElementCount; i++)
        {
            var at = Bytes.AsSpan(i * Type.Size);
            switch (Type.Name)
            {
                case "float32": w.WriteNumberValue(BinaryPrimitives.ReadSingleLittleEndian(at)); break;
                case "float16": w.WriteNumberValue((float)BinaryPrimitives.ReadHalfLittleEndian(at)); break;
                case "float64": w.WriteNumberValue(BinaryPrimitives.ReadDoubleLittleEndian(at)); break;
                case "int64": w.WriteNumberValue(BinaryPrimitives.ReadInt64LittleEndian(at)); break;
                case "int32": w.WriteNumberValue(BinaryPrimitives.ReadInt32LittleEndian(at)); break;
                case "int16": w.WriteNumberValue(BinaryPrimitives.ReadInt16LittleEndian(at)); break;
                case "int8": w.WriteNumberValue((sbyte)at[0]); break;
                case "uint8": w.WriteNumberValue(at[0]); break;
                default: w.WriteBooleanValue(at[0] != 0); break;
            }
        }

        w.WriteEndArray();
    }

    /// <summary>
    /// Reads a JSON <c>data</c> array (the reader on its first token, left on its last) and says whether it holds
    /// exactly these values, nested arrays flattened; numbers are read in this tensor's type, as a server writes them.
    /// </summary>
    public bool JsonDataEquals(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            reader.Skip();
            return false;
        }

        var equal = true;
        var i = 0;
        var depth = reader.CurrentDepth;
        Span<byte> value = stackalloc byte[8];
        while (reader.Read() && !(reader.TokenType == JsonTokenType.EndArray && reader.CurrentDepth == depth))
        {
            if (reader.TokenType == JsonTokenType.StartArray || reader.TokenType == JsonTokenType.EndArray)
            {
                continue;
            }

            if (!equal || i >= ElementCount || !TryEncode(ref reader, value))
            {
                equal = false;
                continue;
            }

            equal = value[..Type.Size].SequenceEqual(Bytes.AsSpan(i * Type.Size, Type.Size));
            i++;
        }

        return equal && i == ElementCount;
    }

    private bool TryEncode(ref Utf8JsonReader reader, scoped Span<byte> into)
    {
        if (Type.Name == "bool")
        {
            into[0] = reader.TokenType == JsonTokenType.True ? (byte)1 : (byte)0;
            return reader.TokenType is JsonTokenType.True or JsonTokenType.False;
        }

        if (reader.TokenType != JsonTokenType.Number)
        {
            return false;
        }

        switch (Type.Name)
        {
            case "float32" when reader.TryGetSingle(out var f): BinaryPrimitives.WriteSingleLittleEndian(into, f); return true;
            case "float16" when reader.TryGetSingle(out var h): BinaryPrimitives.WriteHalfLittleEndian(into, (Half)h); return true;
            case "float64" when reader.TryGetDouble(out var d): BinaryPrimitives.WriteDoubleLittleEndian(into, d); return true;
            case "int64" when reader.TryGetInt64(out var l): BinaryPrimitives.WriteInt64LittleEndian(into, l); return true;
            case "int32" when reader.TryGetInt32(out var n): BinaryPrimitives.WriteInt32LittleEndian(into, n); return true;
            case "int16" when reader.TryGetInt16(out var s): BinaryPrimitives.WriteInt16LittleEndian(into, s); return true;
            case "int8" when reader.TryGetSByte(out var sb): into[0] = (byte)sb; return true;
            case "uint8" when reader.TryGetByte(out var b): into[0] = b; return true;
            default: return false;
        }
    }

    /// <summary>An int64 scalar (shape []), such as a sample rate.</summary>
    public static Payload Int64Scalar(string name, long value)
    {
        var bytes = new byte[sizeof(long)];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, value);
        return new Payload(name, DType.Find("int64")!, [], bytes);
    }

    /// <summary>Audio sample <paramref name="i"/>: a triangle wave of period 40 and amplitude 0.3, plus noise under 0.01.</summary>
    private static double Sample(int i)
    {
        var phase = (i % 40) / 40.0;
        var wave = phase < 0.5 ? (4 * phase) - 1 : 3 - (4 * phase);
        return (0.3 * wave) + ((Pixel(i) - 127.5) / 12750.0);
    }

    /// <summary>A pseudo-random byte for element <paramref name="i"/> (a multiplicative hash: the same every run).</summary>
    private static int Pixel(int i) => (int)(((uint)i * 2654435761u) >> 24);
}
