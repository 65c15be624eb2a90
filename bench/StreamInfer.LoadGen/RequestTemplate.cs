using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;

namespace StreamInfer.LoadGen;

/// <summary>
/// A request's bytes, made once: per request only its id is written into a buffer the slot keeps, so no JSON is
/// written per request. <see cref="ForJson"/> splits a JSON body around its id (the prefix, the id's digits, the
/// suffix are copied per request); <see cref="ForBinaryFrame"/> builds a binary WebSocket frame whose id has a fixed
/// width, so that only those digits change and the tensor bytes are copied into the slot's buffer once.
/// </summary>
internal sealed class RequestTemplate
{
    private const string Placeholder = "@@ID@@";
    private const int MaxIdDigits = 20;

    /// <summary>Digits of a binary frame's id, zero-padded: enough for any id a run reaches.</summary>
    private const int FixedIdDigits = 19;

    private readonly byte[] _prefix;
    private readonly byte[] _suffix;
    private readonly bool _fixedWidth;

    private RequestTemplate(ReadOnlySpan<byte> body, string placeholder, bool fixedWidth)
    {
        var at = body.IndexOf(System.Text.Encoding.UTF8.GetBytes("\"" + placeholder + "\""));
        _prefix = body[..(at + 1)].ToArray();
        _suffix = body[(at + 1 + placeholder.Length)..].ToArray();
        _fixedWidth = fixedWidth;
    }

    /// <summary>The most bytes <see cref="Write"/> writes.</summary>
    public int MaxLength => _prefix.Length + (_fixedWidth ? FixedIdDigits : MaxIdDigits) + _suffix.Length;

    /// <summary>
    /// The JSON body of <paramref name="protocol"/>: an <c>infer</c> frame (<c>ws</c>, <c>predict</c>), or a KServe v2
    /// request (<c>kserve</c>), carrying <paramref name="payload"/> as JSON numbers.
    /// </summary>
    public static RequestTemplate ForJson(Protocol protocol, string model, Payload payload)
    {
        var buffer = new ArrayBufferWriter<byte>(256 + (payload.ElementCount * 12));
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            if (protocol == Protocol.KServe)
            {
                w.WriteString("id", Placeholder);
                w.WriteStartArray("inputs");
                w.WriteStartObject();
                w.WriteString("name", payload.Name);
                WriteShape(w, payload.Shape);
                w.WriteString("datatype", payload.Type.KServe);
            }
            else
            {
                w.WriteString("type", "infer");
                w.WriteString("id", Placeholder);
                w.WriteString("model", model);
                w.WriteStartObject("inputs");
                w.WriteStartObject(payload.Name);
                w.WriteString("dtype", payload.Type.Name);
                WriteShape(w, payload.Shape);
            }

            w.WritePropertyName("data");
            payload.WriteJsonData(w);
            w.WriteEndObject();
            if (protocol == Protocol.KServe)
            {
                w.WriteEndArray();
            }
            else
            {
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        return new RequestTemplate(buffer.WrittenSpan, Placeholder, fixedWidth: false);
    }

    /// <summary>
    /// A binary WebSocket frame: a 4-byte little-endian length N, N bytes of JSON header
    /// <c>{"type":"infer","id","model","inputs":{NAME:{"dtype","shape","bytes":[0,SIZE]}}}</c>, then the tensor's bytes.
    /// </summary>
    public static RequestTemplate ForBinaryFrame(string model, Payload payload)
    {
        var header = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            w.WriteString("type", "infer");
            w.WriteString("id", new string('0', FixedIdDigits));
            w.WriteString("model", model);
            w.WriteStartObject("inputs");
            w.WriteStartObject(payload.Name);
            w.WriteString("dtype", payload.Type.Name);
            WriteShape(w, payload.Shape);
            w.WriteStartArray("bytes");
            w.WriteNumberValue(0);
            w.WriteNumberValue(payload.Bytes.Length);
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }

        var frame = new byte[4 + header.WrittenCount + payload.Bytes.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)header.WrittenCount);
        header.WrittenSpan.CopyTo(frame.AsSpan(4));
        payload.Bytes.CopyTo(frame.AsSpan(4 + header.WrittenCount));
        return new RequestTemplate(frame, new string('0', FixedIdDigits), fixedWidth: true);
    }

    /// <summary>A buffer for one slot's requests; a binary frame's comes filled, and <see cref="Write"/> only sets the id.</summary>
    public byte[] NewBuffer()
    {
        var buffer = new byte[MaxLength];
        if (_fixedWidth)
        {
            _prefix.CopyTo(buffer, 0);
            _suffix.CopyTo(buffer, _prefix.Length + FixedIdDigits);
        }

        return buffer;
    }

    /// <summary>Writes the request with id <paramref name="id"/> into <paramref name="destination"/>, a buffer from <see cref="NewBuffer"/>.</summary>
    /// <returns>The number of bytes written.</returns>
    public int Write(Span<byte> destination, long id)
    {
        if (_fixedWidth)
        {
            if (!id.TryFormat(destination.Slice(_prefix.Length, FixedIdDigits), out var written, "D19", CultureInfo.InvariantCulture) || written != FixedIdDigits)
            {
                throw new ArgumentOutOfRangeException(nameof(id), "the id does not fit the frame's fixed width.");
            }

            return MaxLength;
        }

        _prefix.CopyTo(destination);
        var rest = destination[_prefix.Length..];
        if (!id.TryFormat(rest, out var digits, default, CultureInfo.InvariantCulture))
        {
            throw new ArgumentException("the destination is shorter than MaxLength.", nameof(destination));
        }

        _suffix.CopyTo(rest[digits..]);
        return _prefix.Length + digits + _suffix.Length;
    }

    private static void WriteShape(Utf8JsonWriter w, IReadOnlyList<int> shape)
    {
        w.WriteStartArray("shape");
        foreach (var d in shape)
        {
            w.WriteNumberValue(d);
        }

        w.WriteEndArray();
    }
}
