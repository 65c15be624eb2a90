using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Text.Json;

namespace StreamInfer.Frontend.Protocol;

/// <summary>
/// Parses client frames into <see cref="ClientFrame"/>s. Every failure becomes a structured error with the
/// protocol code and a message that names the field or input at fault; nothing here throws on bad input.
/// </summary>
internal static class RequestParser
{
    /// <summary>Parses one WebSocket text frame, or an HTTP body when <paramref name="defaultType"/> is given.</summary>
    /// <param name="utf8">The frame.</param>
    /// <param name="defaultType">The type assumed when the frame names none (HTTP bodies); null makes <c>type</c> required.</param>
    /// <param name="requireId">Whether an <c>id</c> is required (WebSocket frames); HTTP bodies may leave it out.</param>
    public static ClientFrame Parse(ReadOnlyMemory<byte> utf8, string? defaultType = null, bool requireId = true)
        => Parse(utf8, defaultType, requireId, payload: null);

    /// <summary>
    /// Parses one binary WebSocket message: a 4-byte little-endian length N, N bytes of UTF-8 JSON (a frame as
    /// <see cref="Parse(ReadOnlyMemory{byte}, string?, bool)"/> reads it, whose tensors may name a byte range of the
    /// payload with <c>bytes</c> in place of <c>data</c>), then the payload. Tensors read from the payload are slices of
    /// <paramref name="message"/>, not copies: it must stay unchanged while the request is in the grid. A header longer
    /// than <paramref name="maxHeaderBytes"/> is refused unread, as a text frame over the JSON limit is.
    /// </summary>
    public static ClientFrame ParseBinary(ReadOnlyMemory<byte> message, int maxHeaderBytes)
    {
        if (message.Length < 4)
        {
            return new ClientFrame.Invalid(null, ErrorCode.BadRequest, $"a binary frame starts with its header's length (4 bytes, little-endian); this one has {message.Length} bytes.");
        }

        var headerLength = BinaryPrimitives.ReadUInt32LittleEndian(message.Span);
        if (headerLength > (uint)(message.Length - 4))
        {
            return new ClientFrame.Invalid(null, ErrorCode.BadRequest, $"the binary frame's header length is {headerLength} bytes, but only {message.Length - 4} bytes follow it.");
        }

        if (headerLength > maxHeaderBytes)
        {
            return new ClientFrame.Invalid(null, ErrorCode.PayloadTooLarge, $"a binary frame's JSON header may be at most {maxHeaderBytes} bytes; this one has {headerLength}. Put large tensors in the payload.");
        }

        return Parse(message.Slice(4, (int)headerLength), null, true, message[(4 + (int)headerLength)..]);
    }

    /// <summary>
    /// How far into the payload a binary frame's header reaches: the largest end of its <c>"bytes": [offset, length]</c>
    /// ranges, read without building the document; 0 when it names none or is not JSON. Only a size hint: the receive
    /// loop sizes the frame's buffer by it, and <see cref="ParseBinary"/> still checks every range.
    /// </summary>
    public static long DeclaredPayloadBytes(ReadOnlySpan<byte> header)
    {
        var reader = new Utf8JsonReader(header, new JsonReaderOptions { MaxDepth = 32 });
        long end = 0;
        try
        {
            while (reader.Read())
            {
                if (reader.TokenType == JsonTokenType.PropertyName && reader.ValueTextEquals("bytes"u8)
                    && reader.Read() && reader.TokenType == JsonTokenType.StartArray
                    && reader.Read() && reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var offset) && offset >= 0
                    && reader.Read() && reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var length) && length >= 0
                    && offset <= long.MaxValue - length)
                {
                    end = Math.Max(end, offset + length);
                }
            }
        }
        catch (JsonException)
        {
            // The parse proper answers it; the ranges read so far are as good a hint as any.
        }

        return end;
    }

    private static ClientFrame Parse(ReadOnlyMemory<byte> utf8, string? defaultType, bool requireId, ReadOnlyMemory<byte>? payload)
    {
        var what = payload is null ? "the frame" : "the binary frame's header";
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException ex)
        {
            return new ClientFrame.Invalid(null, ErrorCode.BadRequest, $"{what} is not valid JSON: {ex.Message}");
        }

        using (document)
        {
            try
            {
                return ParseRoot(document.RootElement, defaultType, requireId, payload);
            }
            catch (InvalidOperationException)
            {
                // JsonDocument accepts strings that do not decode (lone surrogates, invalid UTF-8); reading them throws.
                return new ClientFrame.Invalid(null, ErrorCode.BadRequest, $"{what} holds a string that is not valid UTF-8 text.");
            }
        }
    }

    private static ClientFrame ParseRoot(JsonElement root, string? defaultType, bool requireId, ReadOnlyMemory<byte>? payload)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            return new ClientFrame.Invalid(null, ErrorCode.BadRequest, $"{(payload is null ? "a frame" : "a binary frame's header")} must be a JSON object; got {TensorParser.Describe(root.ValueKind)}.");
        }

        string? id = null;
        if (root.TryGetProperty("id", out var idElement))
        {
            if (idElement.ValueKind != JsonValueKind.String || idElement.GetString() is not { Length: > 0 and <= 256 } idText)
            {
                return new ClientFrame.Invalid(null, ErrorCode.BadRequest, "'id' must be a non-empty string of at most 256 characters.");
            }

            id = idText;
        }

        string? type = defaultType;
        if (root.TryGetProperty("type", out var typeElement))
        {
            if (typeElement.ValueKind != JsonValueKind.String)
            {
                return new ClientFrame.Invalid(id, ErrorCode.BadRequest, "'type' must be a string.");
            }

            type = typeElement.GetString();
        }

        if (type is null)
        {
            return new ClientFrame.Invalid(id, ErrorCode.BadRequest, "the frame has no 'type' (expected \"infer\" or \"cancel\").");
        }

        if (type is not ("infer" or "cancel"))
        {
            return new ClientFrame.Invalid(id, ErrorCode.BadRequest, $"unknown type '{type}' (expected \"infer\" or \"cancel\").");
        }

        if (id is null && requireId)
        {
            return new ClientFrame.Invalid(null, ErrorCode.BadRequest, $"a '{type}' frame needs an 'id'.");
        }

        return type == "cancel" ? new ClientFrame.Cancel(id ?? string.Empty) : ParseInfer(root, id ?? string.Empty, payload);
    }

    private static ClientFrame ParseInfer(JsonElement root, string id, ReadOnlyMemory<byte>? payload)
    {
        if (!root.TryGetProperty("model", out var modelElement) || modelElement.ValueKind != JsonValueKind.String
            || modelElement.GetString() is not { Length: > 0 } model)
        {
            return new ClientFrame.Invalid(id, ErrorCode.BadRequest, "an 'infer' frame needs a 'model' string.");
        }

        string? prompt = null;
        if (root.TryGetProperty("prompt", out var promptElement))
        {
            if (promptElement.ValueKind != JsonValueKind.String)
            {
                return new ClientFrame.Invalid(id, ErrorCode.BadRequest, "'prompt' must be a string.");
            }

            prompt = promptElement.GetString();
        }

        TimeSpan? timeout = null;
        if (root.TryGetProperty("timeout_ms", out var timeoutElement))
        {
            if (timeoutElement.ValueKind != JsonValueKind.Number || !timeoutElement.TryGetDouble(out var ms) || ms < 1 || ms > TimeSpan.FromHours(1).TotalMilliseconds)
            {
                return new ClientFrame.Invalid(id, ErrorCode.BadRequest, "'timeout_ms' must be a number of milliseconds from 1 to 3600000.");
            }

            timeout = TimeSpan.FromMilliseconds(ms);
        }

        int? priority = null;
        if (root.TryGetProperty("priority", out var priorityElement))
        {
            if (ParsePriority(priorityElement) is not { } p)
            {
                return new ClientFrame.Invalid(id, ErrorCode.BadRequest, "'priority' must be an integer from 0 to 15.");
            }

            priority = p;
        }

        var inputs = ImmutableArray<NamedTensor>.Empty;
        if (root.TryGetProperty("inputs", out var inputsElement))
        {
            var (parsed, error) = payload is { } bytes
                ? TensorParser.ParseInputs(inputsElement, (name, element) => ParsePayloadTensor(name, element, bytes))
                : TensorParser.ParseInputs(inputsElement);
            if (error is not null)
            {
                return new ClientFrame.Invalid(id, ErrorCode.InvalidInput, error);
            }

            inputs = parsed;
        }

        var (generation, generationError) = ParseGeneration(root);
        if (generationError is not null)
        {
            return new ClientFrame.Invalid(id, ErrorCode.InvalidInput, generationError);
        }

        var stream = true;
        if (root.TryGetProperty("stream", out var streamElement))
        {
            if (streamElement.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return new ClientFrame.Invalid(id, ErrorCode.BadRequest, "'stream' must be true or false.");
            }

            stream = streamElement.GetBoolean();
        }

        bool? binaryOutputs = null;
        if (root.TryGetProperty("binary_outputs", out var binaryElement))
        {
            if (binaryElement.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return new ClientFrame.Invalid(id, ErrorCode.BadRequest, "'binary_outputs' must be true or false.");
            }

            binaryOutputs = binaryElement.GetBoolean();
        }

        var (sequence, sequenceError) = SequenceFields.Read(root, string.Empty, integerId: false);
        if (sequenceError is not null)
        {
            return new ClientFrame.Invalid(id, ErrorCode.BadRequest, sequenceError);
        }

        return new ClientFrame.Infer(id, model, inputs, prompt, timeout, priority, generation, stream, binaryOutputs, sequence);
    }

    /// <summary>
    /// A binary frame's tensor: <c>"bytes": [offset, length]</c> names its bytes in the payload, in the layout of
    /// <see cref="RawTensors"/>; a tensor with <c>data</c> instead is read as in a text frame.
    /// </summary>
    private static (Tensor? Tensor, string? Error) ParsePayloadTensor(string name, JsonElement element, ReadOnlyMemory<byte> payload)
    {
        if (element.ValueKind != JsonValueKind.Object || !element.TryGetProperty("bytes", out var range))
        {
            return TensorParser.ParseTensor(name, element);
        }

        if (element.TryGetProperty("data", out _))
        {
            return (null, $"input '{name}': give 'data' or 'bytes', not both.");
        }

        if (TensorParser.ParseTypeAndShape(name, element, out var type, out var shape) is { } error)
        {
            return (null, error);
        }

        if (range.ValueKind != JsonValueKind.Array || range.GetArrayLength() != 2
            || range[0].ValueKind != JsonValueKind.Number || !range[0].TryGetInt64(out var offset) || offset < 0
            || range[1].ValueKind != JsonValueKind.Number || !range[1].TryGetInt64(out var length) || length < 0)
        {
            var raw = range.GetRawText();
            return (null, $"input '{name}': 'bytes' must be [offset, length], two non-negative integers; got {(raw.Length > 32 ? raw[..32] + "..." : raw)}.");
        }

        if (offset > payload.Length || length > payload.Length - offset)
        {
            return (null, $"input '{name}': bytes [{offset}, {length}] run past the payload's {payload.Length} bytes.");
        }

        var message = RawTensors.TryRead(name, type, shape, payload.Slice((int)offset, (int)length), out var tensor);
        return (tensor, message);
    }

    /// <summary>
    /// Reads the generation settings of a text request: <c>max_tokens</c> (or OpenAI's <c>max_completion_tokens</c>),
    /// <c>temperature</c>, <c>top_k</c>, <c>top_p</c>, <c>seed</c>, <c>stop</c> (a string or an array of strings). Types
    /// are checked here, ranges by the model (they depend on it). Null when none is given.
    /// </summary>
    internal static (GenerationOptions? Options, string? Error) ParseGeneration(JsonElement root)
    {
        int? maxTokens = null, topK = null;
        double? temperature = null, topP = null;
        long? seed = null;
        ImmutableArray<string> stop = default;
        var any = false;
        foreach (var property in root.EnumerateObject())
        {
            var value = property.Value;
            if (value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }

            switch (property.Name)
            {
                case "max_tokens" or "max_completion_tokens":
                    if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var m))
                    {
                        return (null, $"'{property.Name}' must be an integer.");
                    }

                    maxTokens = m;
                    break;
                case "top_k":
                    if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var k))
                    {
                        return (null, "'top_k' must be an integer.");
                    }

                    topK = k;
                    break;
                case "temperature" or "top_p":
                    if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var d) || !double.IsFinite(d))
                    {
                        return (null, $"'{property.Name}' must be a number.");
                    }

                    if (property.Name == "temperature")
                    {
                        temperature = d;
                    }
                    else
                    {
                        topP = d;
                    }

                    break;
                case "seed":
                    if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var sd))
                    {
                        return (null, "'seed' must be an integer.");
                    }

                    seed = sd;
                    break;
                case "stop":
                    if (value.ValueKind == JsonValueKind.String)
                    {
                        stop = [value.GetString()!];
                    }
                    else if (value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
                    {
                        stop = [.. value.EnumerateArray().Select(e => e.GetString()!)];
                    }
                    else
                    {
                        return (null, "'stop' must be a string or an array of strings.");
                    }

                    break;
                default:
                    continue;
            }

            any = true;
        }

        return (any ? new GenerationOptions(maxTokens, temperature, topK, topP, seed, stop) : null, null);
    }

    /// <summary>A priority level (0 to 15), or null when the element is not one.</summary>
    internal static int? ParsePriority(JsonElement element)
        => element.ValueKind == JsonValueKind.Number && element.TryGetInt32(out var p) && p is >= 0 and <= 15 ? p : null;
}
