using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;

namespace StreamInfer.LoadGen;

/// <summary>
/// A request's bytes, made once: per request only its id is written into a buffer the slot keeps, so no JSON is
/// written per request. <see cref="ForJson"/> splits a JSON body around its id (the prefix, the id's digits, the
/// suffix are copied per request); <see cref="ForBinaryFrame"/> builds a binary WebSocket frame whose id has a fixed
/// width, so that only those digits change and the tensor bytes are copied into the slot's buffer once. A sequence's
/// fields (<c>sequence_id</c> of fixed width, <c>sequence_start</c> and <c>sequence_end</c> as <c>true </c> or
/// <c>false</c>, five bytes either way) follow the id, so they too are patched in place.
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

    /// <summary>Where the sequence's id digits, start flag and end flag begin, counted from the suffix's start; -1 without.</summary>
    private readonly int _sequenceIdAt = -1;
    private readonly int _startAt = -1;
    private readonly int _endAt = -1;

    private RequestTemplate(ReadOnlySpan<byte> body, string placeholder, bool fixedWidth)
    {
        var at = body.IndexOf(System.Text.Encoding.UTF8.GetBytes("\"" + placeholder + "\""));
        _prefix = body[..(at + 1)].ToArray();
        _suffix = body[(at + 1 + placeholder.Length)..].ToArray();
        _fixedWidth = fixedWidth;
        var sequenceId = _suffix.AsSpan().IndexOf("\"sequence_id\":\""u8);
        if (sequenceId >= 0)
        {
            _sequenceIdAt = sequenceId + "\"sequence_id\":\""u8.Length;
            _startAt = _suffix.AsSpan().IndexOf("\"sequence_start\":"u8) + "\"sequence_start\":"u8.Length;
            _endAt = _suffix.AsSpan().IndexOf("\"sequence_end\":"u8) + "\"sequence_end\":"u8.Length;
        }
    }

    /// <summary>The most bytes <see cref="Write"/> writes.</summary>
    public int MaxLength => _prefix.Length + (_fixedWidth ? FixedIdDigits : MaxIdDigits) + _suffix.Length;

    /// <summary>
    /// The JSON body of <paramref name="protocol"/>: an <c>infer</c> frame (<c>ws</c>, <c>predict</c>), or a KServe v2
    /// request (<c>kserve</c>), carrying <paramref name="payload"/> and then <paramref name="extras"/> as JSON numbers,
    /// and the sequence's fields when <paramref name="sequence"/> (<c>ws</c>, <c>predict</c>).
    /// </summary>
    public static RequestTemplate ForJson(Protocol protocol, string model, Payload payload, IReadOnlyList<Payload>? extras = null, bool sequence = false)
    {
        extras ??= [];
        var buffer = new ArrayBufferWriter<byte>(256 + (payload.ElementCount * 12));
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            if (protocol == Protocol.KServe)
            {
                w.WriteString("id", Placeholder);
                w.WriteStartArray("inputs");
                foreach (var tensor in (IEnumerable<Payload>)[payload, .. extras])
                {
                    w.WriteStartObject();
                    w.WriteString("name", tensor.Name);
                    WriteShape(w, tensor.Shape);
                    w.WriteString("datatype", tensor.Type.KServe);
                    w.WritePropertyName("data");
                    tensor.WriteJsonData(w);
                    w.WriteEndObject();
                }
            }
            else
            {
                w.WriteString("type", "infer");
                w.WriteString("id", Placeholder);
                if (sequence)
                {
                    WriteSequenceFields(w);
                }

                w.WriteString("model", model);
                w.WriteStartObject("inputs");
                foreach (var tensor in (IEnumerable<Payload>)[payload, .. extras])
                {
                    w.WriteStartObject(tensor.Name);
                    w.WriteString("dtype", tensor.Type.Name);
                    WriteShape(w, tensor.Shape);
                    w.WritePropertyName("data");
                    tensor.WriteJsonData(w);
                    w.WriteEndObject();
                }
            }

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
    /// <c>{"type":"infer","id","model","inputs":{NAME:{"dtype","shape","bytes":[0,SIZE]}}}</c>, then the tensor's bytes
    /// (and after them each of <paramref name="extras"/>'s, each named in the header with its range); the sequence's
    /// fields follow the id when <paramref name="sequence"/>.
    /// </summary>
    public static RequestTemplate ForBinaryFrame(string model, Payload payload, IReadOnlyList<Payload>? extras = null, bool sequence = false)
    {
        Payload[] tensors = [payload, .. extras ?? []];
        var header = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            w.WriteString("type", "infer");
            w.WriteString("id", new string('0', FixedIdDigits));
            if (sequence)
            {
                WriteSequenceFields(w);
            }

            w.WriteString("model", model);
            w.WriteStartObject("inputs");
            var offset = 0;
            foreach (var tensor in tensors)
            {
                w.WriteStartObject(tensor.Name);
                w.WriteString("dtype", tensor.Type.Name);
                WriteShape(w, tensor.Shape);
                w.WriteStartArray("bytes");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(tensor.Bytes.Length);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += tensor.Bytes.Length;
            }

            w.WriteEndObject();
            w.WriteEndObject();
        }

        var frame = new byte[4 + header.WrittenCount + tensors.Sum(t => t.Bytes.Length)];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)header.WrittenCount);
        header.WrittenSpan.CopyTo(frame.AsSpan(4));
        var at = 4 + header.WrittenCount;
        foreach (var tensor in tensors)
        {
            tensor.Bytes.CopyTo(frame.AsSpan(at));
            at += tensor.Bytes.Length;
        }

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

    /// <summary>Whether the requests carry a sequence's fields (see <see cref="Write"/>).</summary>
    public bool HasSequence => _sequenceIdAt >= 0;

    /// <summary>
    /// Writes the request with id <paramref name="id"/> into <paramref name="destination"/>, a buffer from
    /// <see cref="NewBuffer"/>, and, for a template with a sequence, <paramref name="sequence"/>'s fields.
    /// </summary>
    /// <returns>The number of bytes written.</returns>
    public int Write(Span<byte> destination, long id, SequenceMark sequence = default)
    {
        int length;
        Span<byte> suffix;
        if (_fixedWidth)
        {
            if (!id.TryFormat(destination.Slice(_prefix.Length, FixedIdDigits), out var written, "D19", CultureInfo.InvariantCulture) || written != FixedIdDigits)
            {
                throw new ArgumentOutOfRangeException(nameof(id), "the id does not fit the frame's fixed width.");
            }

            length = MaxLength;
            suffix = destination[(_prefix.Length + FixedIdDigits)..];
        }
        else
        {
            _prefix.CopyTo(destination);
            var rest = destination[_prefix.Length..];
            if (!id.TryFormat(rest, out var digits, default, CultureInfo.InvariantCulture))
            {
                throw new ArgumentException("the destination is shorter than MaxLength.", nameof(destination));
            }

            _suffix.CopyTo(rest[digits..]);
            length = _prefix.Length + digits + _suffix.Length;
            suffix = rest[digits..];
        }

        if (HasSequence)
        {
            sequence.Id.TryFormat(suffix.Slice(_sequenceIdAt, FixedIdDigits), out _, "D19", CultureInfo.InvariantCulture);
            (sequence.Start ? "true "u8 : "false"u8).CopyTo(suffix[_startAt..]);
            (sequence.End ? "true "u8 : "false"u8).CopyTo(suffix[_endAt..]);
        }

        return length;
    }

    /// <summary>A sequence's fields: its id (zero-padded to a fixed width) and start and end flags, each five bytes.</summary>
    private static void WriteSequenceFields(Utf8JsonWriter w)
    {
        w.WriteString("sequence_id", new string('0', FixedIdDigits));
        w.WriteBoolean("sequence_start", false);
        w.WriteBoolean("sequence_end", false);
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

/// <summary>One request's place in its sequence: the sequence's id, and whether the request starts or ends it.</summary>
internal readonly record struct SequenceMark(long Id, bool Start, bool End);
