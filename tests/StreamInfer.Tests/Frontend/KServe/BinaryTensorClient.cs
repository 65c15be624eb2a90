using System.Buffers.Binary;
using System.Globalization;
using System.Net.Http.Headers;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace StreamInfer.Tests.Frontend.KServe;

/// <summary>
/// What a client of the KServe v2 binary tensor data extension does by hand, as Triton's client libraries do: the JSON
/// header, then each binary input's raw bytes in input order, with <c>Inference-Header-Content-Length</c>; and the
/// answer split back into its JSON header and each binary output's bytes.
/// </summary>
internal static class BinaryTensorClient
{
    public const string HeaderName = "Inference-Header-Content-Length";

    /// <summary>A binary input's JSON: <c>{name, datatype, shape, parameters: {binary_data_size}}</c>.</summary>
    public static JsonObject Input(string name, string datatype, long[] shape, byte[] raw) => new()
    {
        ["name"] = name,
        ["datatype"] = datatype,
        ["shape"] = new JsonArray([.. shape.Select(d => JsonValue.Create(d))]),
        ["parameters"] = new JsonObject { ["binary_data_size"] = raw.Length },
    };

    /// <summary>An <c>infer</c> request whose body is <paramref name="header"/>'s JSON followed by <paramref name="binary"/>;
    /// <paramref name="headerLength"/> replaces the header's true length when given.</summary>
    public static HttpRequestMessage Request(string model, JsonNode header, byte[] binary, string? headerLength = null)
        => Request(model, Encoding.UTF8.GetBytes(header.ToJsonString()), binary, headerLength);

    public static HttpRequestMessage Request(string model, byte[] header, byte[] binary, string? headerLength = null)
    {
        var content = new ByteArrayContent([.. header, .. binary]);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var request = new HttpRequestMessage(HttpMethod.Post, $"/v2/models/{model}/infer") { Content = content };
        request.Headers.TryAddWithoutValidation(HeaderName, headerLength ?? header.Length.ToString(CultureInfo.InvariantCulture));
        return request;
    }

    /// <summary>Reads an answer: its JSON header (the whole body when there is no binary data), and each binary
    /// output's bytes by name; asserts the binary outputs' sizes add up to what follows the header.</summary>
    public static async Task<Answer> ReadAsync(HttpResponseMessage response)
    {
        var bytes = await response.Content.ReadAsByteArrayAsync();
        var headerLength = response.Headers.TryGetValues(HeaderName, out var values) ? int.Parse(values.Single(), CultureInfo.InvariantCulture) : bytes.Length;
        var header = JsonDocument.Parse(bytes.AsMemory(0, headerLength)).RootElement.Clone();
        var binary = new Dictionary<string, byte[]>();
        var offset = headerLength;
        if (header.TryGetProperty("outputs", out var outputs))
        {
            foreach (var output in outputs.EnumerateArray())
            {
                if (output.TryGetProperty("parameters", out var p) && p.TryGetProperty("binary_data_size", out var size))
                {
                    Assert.False(output.TryGetProperty("data", out _), "a binary output carries no 'data'");
                    binary[output.GetProperty("name").GetString()!] = bytes[offset..(offset + size.GetInt32())];
                    offset += size.GetInt32();
                }
            }
        }

        Assert.Equal(bytes.Length, offset);
        return new Answer(header, binary, response.Content.Headers.ContentType?.MediaType, values is not null);
    }

    /// <summary>The raw layout of numbers, little-endian.</summary>
    public static byte[] Raw<T>(params T[] values)
        where T : struct => BitConverter.IsLittleEndian ? MemoryMarshal.AsBytes(values.AsSpan()).ToArray() : throw new PlatformNotSupportedException();

    /// <summary>BOOL: one byte each, 0 or 1.</summary>
    public static byte[] Raw(params bool[] values) => [.. values.Select(v => v ? (byte)1 : (byte)0)];

    /// <summary>BYTES: each element a 4-byte little-endian length and its UTF-8 bytes.</summary>
    public static byte[] Raw(params string[] values)
    {
        var raw = new List<byte>();
        foreach (var value in values)
        {
            var utf8 = Encoding.UTF8.GetBytes(value);
            var length = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(length, utf8.Length);
            raw.AddRange(length);
            raw.AddRange(utf8);
        }

        return [.. raw];
    }

    /// <summary>A JSON output's <c>data</c> in the raw layout of its datatype, to compare with a binary output.</summary>
    public static byte[] RawOf(JsonElement output)
    {
        var data = output.GetProperty("data").EnumerateArray();
        return output.GetProperty("datatype").GetString() switch
        {
            "FP32" => Raw(data.Select(e => e.GetSingle()).ToArray()),
            "FP16" => Raw(data.Select(e => (Half)e.GetSingle()).ToArray()),
            "FP64" => Raw(data.Select(e => e.GetDouble()).ToArray()),
            "INT64" => Raw(data.Select(e => e.GetInt64()).ToArray()),
            "INT32" => Raw(data.Select(e => e.GetInt32()).ToArray()),
            "UINT8" => Raw(data.Select(e => e.GetByte()).ToArray()),
            "BOOL" => Raw(data.Select(e => e.GetBoolean()).ToArray()),
            "BYTES" => Raw(data.Select(e => e.GetString()!).ToArray()),
            var other => throw new NotSupportedException(other),
        };
    }

    /// <summary>An answer: its JSON header, the binary outputs' bytes by name, its media type, and whether it carried
    /// the header-length header.</summary>
    public sealed record Answer(JsonElement Header, Dictionary<string, byte[]> Binary, string? MediaType, bool HasHeaderLength)
    {
        public Dictionary<string, JsonElement> Outputs => Header.GetProperty("outputs").EnumerateArray().ToDictionary(o => o.GetProperty("name").GetString()!);

        public string[] OutputNames => [.. Header.GetProperty("outputs").EnumerateArray().Select(o => o.GetProperty("name").GetString()!)];
    }
}
