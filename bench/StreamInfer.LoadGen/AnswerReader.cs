using System.Text.Json;

namespace StreamInfer.LoadGen;

/// <summary>A result's <c>timing</c>: its batch's size (0 when absent), its time queued, and its batch's compute time.</summary>
internal readonly record struct FrameTiming(int BatchSize, double QueueMs, double ComputeMs);

/// <summary>
/// Reads what answers carry beyond their id: the server's <c>timing</c>, an error's <c>code</c>, and whether the
/// output named as the sent input holds exactly the sent bytes (an echo answer), as JSON data or as a byte range of
/// the binary part.
/// </summary>
internal static class AnswerReader
{
    /// <summary>
    /// Reads a result's <c>timing</c> object (<c>batch_size</c>, <c>queue_ms</c>, <c>compute_ms</c>); the reader is on
    /// its first token and is left on its last. Anything else there is skipped; a batch size of 0 means none was given.
    /// </summary>
    public static FrameTiming ReadTiming(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return default;
        }

        int batchSize = 0;
        double queueMs = 0, computeMs = 0;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var field = reader.ValueTextEquals("batch_size"u8) ? 1 : reader.ValueTextEquals("queue_ms"u8) ? 2 : reader.ValueTextEquals("compute_ms"u8) ? 3 : 0;
            reader.Read();
            if (reader.TokenType != JsonTokenType.Number)
            {
                reader.Skip();
                continue;
            }

            switch (field)
            {
                case 1 when reader.TryGetInt32(out var b) && b > 0: batchSize = b; break;
                case 2 when reader.TryGetDouble(out var q): queueMs = q; break;
                case 3 when reader.TryGetDouble(out var c): computeMs = c; break;
                default: break;
            }
        }

        return new FrameTiming(batchSize, queueMs, computeMs);
    }

    /// <summary>
    /// A WebSocket result's <c>outputs</c> (<c>{NAME: {"dtype", "shape", "data" | "bytes": [offset, length]}}</c>, the
    /// reader on its first token, left on its last): whether the output named as the payload holds its bytes, as JSON
    /// data or as that range of <paramref name="binary"/> (the bytes after a binary frame's header).
    /// </summary>
    public static bool WebSocketOutputsMatch(ref Utf8JsonReader reader, Payload payload, ReadOnlySpan<byte> binary)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return false;
        }

        var match = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var named = string.Equals(reader.GetString(), payload.Name, StringComparison.OrdinalIgnoreCase);
            reader.Read();
            if (named)
            {
                match = TensorMatches(ref reader, payload, binary);
            }
            else
            {
                reader.Skip();
            }
        }

        return match;
    }

    /// <summary>
    /// An HTTP answer (KServe v2, or /predict): its JSON part (the whole body, or the binary extension's header) and
    /// the raw bytes after it. Returns the server's timing, the error code of a refusal (<c>{"error": message, "code"}</c>, or
    /// <c>{"error": {"code"}}</c> as /predict answers), and, when <paramref name="verify"/>, whether the output named as
    /// the payload holds its bytes (raw outputs follow in the order of the outputs that declare a <c>binary_data_size</c>).
    /// </summary>
    public static (FrameTiming Timing, string? ErrorCode, bool Match) ReadHttpAnswer(ReadOnlySpan<byte> json, ReadOnlySpan<byte> binary, Payload payload, bool verify)
    {
        var timing = default(FrameTiming);
        string? code = null;
        var match = false;
        try
        {
            var reader = new Utf8JsonReader(json);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return (timing, null, false);
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("timing"u8))
                {
                    reader.Read();
                    timing = ReadTiming(ref reader);
                }
                else if (reader.ValueTextEquals("code"u8))
                {
                    reader.Read();
                    code = reader.TokenType == JsonTokenType.String ? reader.GetString() : code;
                }
                else if (reader.ValueTextEquals("error"u8))
                {
                    reader.Read();
                    code = reader.TokenType == JsonTokenType.StartObject ? ReadCode(ref reader) ?? code : code;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("outputs"u8) && verify)
                {
                    reader.Read();
                    // KServe's array of outputs, or /predict's object of them by name.
                    match = reader.TokenType == JsonTokenType.StartArray
                        ? KServeOutputsMatch(ref reader, payload, binary)
                        : WebSocketOutputsMatch(ref reader, payload, binary);
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
        }
        catch (JsonException)
        {
            return (timing, code, false);
        }

        return (timing, code, match);
    }

    /// <summary>KServe's <c>outputs</c> array; raw bytes are consumed in order by the outputs with a <c>binary_data_size</c>.</summary>
    private static bool KServeOutputsMatch(ref Utf8JsonReader reader, Payload payload, ReadOnlySpan<byte> binary)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            reader.Skip();
            return false;
        }

        var match = false;
        var offset = 0L;
        while (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
        {
            string? name = null;
            var size = -1L;
            var dataMatches = false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("name"u8))
                {
                    reader.Read();
                    name = reader.GetString();
                }
                else if (reader.ValueTextEquals("data"u8))
                {
                    reader.Read();
                    dataMatches = payload.JsonDataEquals(ref reader);
                }
                else if (reader.ValueTextEquals("parameters"u8))
                {
                    reader.Read();
                    size = ReadBinarySize(ref reader);
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            var named = string.Equals(name, payload.Name, StringComparison.OrdinalIgnoreCase);
            if (size >= 0)
            {
                match |= named && offset + size <= binary.Length && binary.Slice((int)offset, (int)size).SequenceEqual(payload.Bytes);
                offset += size;
            }
            else
            {
                match |= named && dataMatches;
            }
        }

        return match;
    }

    /// <summary>A WebSocket tensor <c>{"dtype", "shape", "data" | "bytes"}</c>: whether it holds the payload's bytes.</summary>
    private static bool TensorMatches(ref Utf8JsonReader reader, Payload payload, ReadOnlySpan<byte> binary)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return false;
        }

        var match = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("data"u8))
            {
                reader.Read();
                match = payload.JsonDataEquals(ref reader);
            }
            else if (reader.ValueTextEquals("bytes"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.StartArray && reader.Read() && reader.TryGetInt64(out var start)
                    && reader.Read() && reader.TryGetInt64(out var length) && reader.Read() && reader.TokenType == JsonTokenType.EndArray)
                {
                    match = start >= 0 && length >= 0 && start + length <= binary.Length && binary.Slice((int)start, (int)length).SequenceEqual(payload.Bytes);
                }
                else
                {
                    reader.Skip();
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        return match;
    }

    private static long ReadBinarySize(ref Utf8JsonReader reader)
    {
        var size = -1L;
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return size;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isSize = reader.ValueTextEquals("binary_data_size"u8);
            reader.Read();
            if (isSize && reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var n))
            {
                size = n;
            }
            else
            {
                reader.Skip();
            }
        }

        return size;
    }

    private static string? ReadCode(ref Utf8JsonReader reader)
    {
        var depth = reader.CurrentDepth;
        string? code = null;
        while (reader.Read() && reader.CurrentDepth > depth)
        {
            if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == depth + 1 && reader.ValueTextEquals("code"u8))
            {
                reader.Read();
                code = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
            }
        }

        return code;
    }
}
