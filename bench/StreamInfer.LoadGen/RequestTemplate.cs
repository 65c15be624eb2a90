using System.Buffers;
using System.Globalization;
using System.Text.Json;

namespace StreamInfer.LoadGen;

/// <summary>
/// The bytes of an <c>infer</c> frame, split around its id, so that a request is the prefix, the id's digits and the
/// suffix copied into a buffer: no JSON is written per request.
/// </summary>
internal sealed class RequestTemplate
{
    private const string Placeholder = "@@ID@@";
    private const int MaxIdDigits = 20;

    private readonly byte[] _prefix;
    private readonly byte[] _suffix;

    public RequestTemplate(string model, IReadOnlyList<int> shape, int elementCount)
    {
        var buffer = new ArrayBufferWriter<byte>(256 + (elementCount * 8));
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("type", "infer");
            w.WriteString("id", Placeholder);
            w.WriteString("model", model);
            w.WriteStartObject("inputs");
            w.WriteStartObject("x");
            w.WriteString("dtype", "float32");
            w.WriteStartArray("shape");
            foreach (var d in shape)
            {
                w.WriteNumberValue(d);
            }

            w.WriteEndArray();
            w.WriteStartArray("data");
            for (var i = 0; i < elementCount; i++)
            {
                // 0, 0.5, 1, ... 7.5, 0, ...: exact in float32 and short on the wire.
                w.WriteNumberValue((i % 16) * 0.5f);
            }

            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }

        var frame = buffer.WrittenSpan;
        var at = frame.IndexOf("\"@@ID@@\""u8);
        _prefix = frame[..(at + 1)].ToArray();
        _suffix = frame[(at + 1 + Placeholder.Length)..].ToArray();
    }

    /// <summary>The most bytes <see cref="Write"/> writes.</summary>
    public int MaxLength => _prefix.Length + MaxIdDigits + _suffix.Length;

    /// <summary>Writes the frame for request <paramref name="id"/> into <paramref name="destination"/>.</summary>
    /// <returns>The number of bytes written.</returns>
    public int Write(Span<byte> destination, long id)
    {
        _prefix.CopyTo(destination);
        var rest = destination[_prefix.Length..];
        if (!id.TryFormat(rest, out var digits, default, CultureInfo.InvariantCulture))
        {
            throw new ArgumentException("the destination is shorter than MaxLength.", nameof(destination));
        }

        _suffix.CopyTo(rest[digits..]);
        return _prefix.Length + digits + _suffix.Length;
    }
}
