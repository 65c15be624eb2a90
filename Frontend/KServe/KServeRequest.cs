using System.Text.Json;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.KServe;

/// <summary>A KServe v2 inference request, read into the frontend's own <see cref="ClientFrame.Infer"/>.</summary>
internal static class KServeRequest
{
    /// <summary>
    /// Parses an inference request: <c>{"id"?, "parameters"?: {"priority", "timeout_ms"}, "inputs": [...],
    /// "outputs"?: [{"name"}]}</c>.
    /// </summary>
    internal static (ClientFrame.Infer? Infer, HashSet<string>? Outputs, InferError? Error) Parse(ReadOnlyMemory<byte> body, string model)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException ex)
        {
            return (null, null, new InferError(ErrorCode.BadRequest, $"the body is not valid JSON: {ex.Message}"));
        }

        using (document)
        {
            try
            {
                return ParseRoot(document.RootElement, model);
            }
            catch (InvalidOperationException)
            {
                return (null, null, new InferError(ErrorCode.BadRequest, "the body holds a string that is not valid UTF-8 text."));
            }
        }
    }

    private static (ClientFrame.Infer?, HashSet<string>?, InferError?) ParseRoot(JsonElement root, string model)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            return (null, null, new InferError(ErrorCode.BadRequest, "the body must be a JSON object with 'inputs'."));
        }

        var id = string.Empty;
        if (root.TryGetProperty("id", out var idElement))
        {
            if (idElement.ValueKind != JsonValueKind.String || idElement.GetString() is not { Length: <= 256 } idText)
            {
                return (null, null, new InferError(ErrorCode.BadRequest, "'id' must be a string of at most 256 characters."));
            }

            id = idText;
        }

        int? priority = null;
        TimeSpan? timeout = null;
        if (root.TryGetProperty("parameters", out var parameters))
        {
            if (parameters.ValueKind != JsonValueKind.Object)
            {
                return (null, null, new InferError(ErrorCode.BadRequest, "'parameters' must be an object."));
            }

            if (parameters.TryGetProperty("priority", out var p))
            {
                priority = RequestParser.ParsePriority(p);
                if (priority is null)
                {
                    return (null, null, new InferError(ErrorCode.BadRequest, "'parameters.priority' must be an integer from 0 to 15."));
                }
            }

            if (parameters.TryGetProperty("timeout_ms", out var t))
            {
                if (t.ValueKind != JsonValueKind.Number || !t.TryGetDouble(out var ms) || ms < 1 || ms > TimeSpan.FromHours(1).TotalMilliseconds)
                {
                    return (null, null, new InferError(ErrorCode.BadRequest, "'parameters.timeout_ms' must be a number of milliseconds from 1 to 3600000."));
                }

                timeout = TimeSpan.FromMilliseconds(ms);
            }
        }

        if (!root.TryGetProperty("inputs", out var inputsElement) || inputsElement.ValueKind != JsonValueKind.Array)
        {
            return (null, null, new InferError(ErrorCode.InvalidInput, "'inputs' must be an array of tensors: {\"name\", \"shape\", \"datatype\", \"data\"}."));
        }

        var (inputs, error) = TensorParser.ParseInputs(inputsElement);
        if (error is not null)
        {
            return (null, null, new InferError(ErrorCode.InvalidInput, error));
        }

        HashSet<string>? outputs = null;
        if (root.TryGetProperty("outputs", out var outputsElement) && outputsElement.ValueKind != JsonValueKind.Null)
        {
            if (outputsElement.ValueKind != JsonValueKind.Array)
            {
                return (null, null, new InferError(ErrorCode.BadRequest, "'outputs' must be an array of {\"name\"} objects."));
            }

            outputs = new HashSet<string>(StringComparer.Ordinal);
            foreach (var o in outputsElement.EnumerateArray())
            {
                if (o.ValueKind != JsonValueKind.Object || !o.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String || n.GetString() is not { Length: > 0 } outputName)
                {
                    return (null, null, new InferError(ErrorCode.BadRequest, "every entry of 'outputs' needs a non-empty 'name'."));
                }

                outputs.Add(outputName);
            }
        }

        return (new ClientFrame.Infer(id, model, inputs, null, timeout, priority), outputs, null);
    }
}
