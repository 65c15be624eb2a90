using System.Text.Json;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.KServe;

/// <summary>An output a request names, and whether it asked for it as binary data (null: the request's default).</summary>
internal readonly record struct RequestedOutput(string Name, bool? Binary);

/// <summary>
/// Which outputs the answer carries: those <see cref="Named"/> in their order, or all of them (null); each as binary
/// data when it asks so, or else when <see cref="BinaryByDefault"/> (the request's <c>binary_data_output</c>).
/// </summary>
internal sealed record OutputSelection(IReadOnlyList<RequestedOutput>? Named, bool BinaryByDefault);

/// <summary>A parsed KServe v2 inference request; <see cref="ReadsBody"/> when some input is a slice of the body.</summary>
internal sealed record KServeInfer(ClientFrame.Infer Infer, OutputSelection Outputs, bool ReadsBody);

/// <summary>A KServe v2 inference request, read into the frontend's own <see cref="ClientFrame.Infer"/>.</summary>
internal static class KServeRequest
{
    /// <summary>
    /// Parses an inference request: <c>{"id"?, "parameters"?: {"priority", "timeout_ms", "binary_data_output",
    /// "sequence_id", "sequence_start", "sequence_end"},
    /// "inputs": [...], "outputs"?: [{"name", "parameters"?: {"binary_data"}}]}</c>. With <paramref name="headerLength"/>
    /// that JSON is the body's first bytes and the binary data of the inputs with <c>binary_data_size</c> follows it.
    /// </summary>
    internal static (KServeInfer? Request, InferError? Error) Parse(ReadOnlyMemory<byte> body, int? headerLength, string model)
    {
        var header = headerLength is { } length ? body[..length] : body;
        var binary = headerLength is { } start ? body[start..] : ReadOnlyMemory<byte>.Empty;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException ex)
        {
            var what = headerLength is null ? "the body" : $"the inference header (the body's first {headerLength} bytes)";
            return (null, BadRequest($"{what} is not valid JSON: {ex.Message}"));
        }

        using (document)
        {
            try
            {
                return ParseRoot(document.RootElement, model, binary, headerLength is not null);
            }
            catch (InvalidOperationException)
            {
                return (null, BadRequest("the body holds a string that is not valid UTF-8 text."));
            }
        }
    }

    private static (KServeInfer?, InferError?) ParseRoot(JsonElement root, string model, ReadOnlyMemory<byte> binary, bool hasBinary)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            return (null, BadRequest("the body must be a JSON object with 'inputs'."));
        }

        var id = string.Empty;
        if (root.TryGetProperty("id", out var idElement))
        {
            if (idElement.ValueKind != JsonValueKind.String || idElement.GetString() is not { Length: <= 256 } idText)
            {
                return (null, BadRequest("'id' must be a string of at most 256 characters."));
            }

            id = idText;
        }

        int? priority = null;
        TimeSpan? timeout = null;
        SequenceControl? sequence = null;
        var binaryOutput = false;
        // Clients built on typed models send absent parameters as null.
        if (root.TryGetProperty("parameters", out var parameters) && parameters.ValueKind != JsonValueKind.Null)
        {
            if (parameters.ValueKind != JsonValueKind.Object)
            {
                return (null, BadRequest("'parameters' must be an object."));
            }

            if (parameters.TryGetProperty("priority", out var p))
            {
                priority = RequestParser.ParsePriority(p);
                if (priority is null)
                {
                    return (null, BadRequest("'parameters.priority' must be an integer from 0 to 15."));
                }
            }

            if (parameters.TryGetProperty("timeout_ms", out var t))
            {
                if (t.ValueKind != JsonValueKind.Number || !t.TryGetDouble(out var ms) || ms < 1 || ms > TimeSpan.FromHours(1).TotalMilliseconds)
                {
                    return (null, BadRequest("'parameters.timeout_ms' must be a number of milliseconds from 1 to 3600000."));
                }

                timeout = TimeSpan.FromMilliseconds(ms);
            }

            if (parameters.TryGetProperty("binary_data_output", out var b))
            {
                if (b.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                {
                    return (null, BadRequest("'parameters.binary_data_output' must be true or false."));
                }

                binaryOutput = b.GetBoolean();
            }

            (sequence, var sequenceError) = SequenceFields.Read(parameters, "parameters.", integerId: true);
            if (sequenceError is not null)
            {
                return (null, BadRequest(sequenceError));
            }
        }

        if (!root.TryGetProperty("inputs", out var inputsElement) || inputsElement.ValueKind != JsonValueKind.Array)
        {
            return (null, new InferError(ErrorCode.InvalidInput, "'inputs' must be an array of tensors: {\"name\", \"shape\", \"datatype\", \"data\"}."));
        }

        var (inputs, readsBody, error) = KServeInputs.Parse(inputsElement, binary, hasBinary);
        if (error is not null)
        {
            return (null, error);
        }

        var (outputs, outputsError) = ParseOutputs(root);
        if (outputsError is not null)
        {
            return (null, outputsError);
        }

        var infer = new ClientFrame.Infer(id, model, inputs, null, timeout, priority, Sequence: sequence);
        return (new KServeInfer(infer, new OutputSelection(outputs, binaryOutput), readsBody), null);
    }

    private static (List<RequestedOutput>? Outputs, InferError? Error) ParseOutputs(JsonElement root)
    {
        if (!root.TryGetProperty("outputs", out var outputsElement) || outputsElement.ValueKind == JsonValueKind.Null)
        {
            return (null, null);
        }

        if (outputsElement.ValueKind != JsonValueKind.Array)
        {
            return (null, BadRequest("'outputs' must be an array of {\"name\"} objects."));
        }

        var outputs = new List<RequestedOutput>();
        foreach (var o in outputsElement.EnumerateArray())
        {
            if (o.ValueKind != JsonValueKind.Object || !o.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String || n.GetString() is not { Length: > 0 } name)
            {
                return (null, BadRequest("every entry of 'outputs' needs a non-empty 'name'."));
            }

            bool? binary = null;
            if (o.TryGetProperty("parameters", out var parameters) && parameters.ValueKind != JsonValueKind.Null)
            {
                if (parameters.ValueKind != JsonValueKind.Object)
                {
                    return (null, BadRequest($"output '{name}': 'parameters' must be an object."));
                }

                if (parameters.TryGetProperty("binary_data", out var b))
                {
                    if (b.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                    {
                        return (null, BadRequest($"output '{name}': 'parameters.binary_data' must be true or false."));
                    }

                    binary = b.GetBoolean();
                }

                // Triton's classification extension would answer another tensor than the one named; it is not served.
                if (parameters.TryGetProperty("classification", out _))
                {
                    return (null, new InferError(ErrorCode.InvalidInput, $"output '{name}': 'classification' is not supported; request the output itself."));
                }
            }

            // A name given twice is answered once, as the first entry asks.
            if (!outputs.Exists(r => r.Name == name))
            {
                outputs.Add(new RequestedOutput(name, binary));
            }
        }

        return (outputs, null);
    }

    private static InferError BadRequest(string message) => new(ErrorCode.BadRequest, message);
}
