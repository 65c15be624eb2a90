using System.Buffers;
using System.Text.Json;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Routing;
using StreamInfer.Grains.Options;

namespace StreamInfer.Frontend.KServe;

/// <summary>
/// The KServe v2 / Open Inference Protocol over HTTP/JSON for tensor models: health, model metadata and readiness,
/// and <c>infer</c>. Inference goes through the caller's session and the batchers like every other request. Errors
/// carry the protocol's <c>error</c> string plus StreamInfer's <c>code</c> (and <c>retry_after_ms</c>), with the same
/// HTTP statuses as <c>/predict</c>.
/// </summary>
internal static partial class KServeEndpoints
{
    public static WebApplication MapKServe(this WebApplication app)
    {
        app.MapGet("/v2", () => Results.Json(new { name = "streaminfer", version = typeof(KServeEndpoints).Assembly.GetName().Version?.ToString(), extensions = Array.Empty<string>() }));
        app.MapGet("/v2/health/live", () => Results.Json(new { live = true }));
        app.MapGet("/v2/health/ready", Operations.HealthEndpoints.ReadyAsync);
        app.MapGet("/v2/models/{name}", (HttpContext c, IClusterClient client, string name) => MetadataAsync(c, client, name, null));
        app.MapGet("/v2/models/{name}/versions/{version}", (HttpContext c, IClusterClient client, string name, string version) => MetadataAsync(c, client, name, version));
        app.MapGet("/v2/models/{name}/ready", (HttpContext c, IClusterClient client, string name) => ModelReadyAsync(c, client, name, null));
        app.MapGet("/v2/models/{name}/versions/{version}/ready", (HttpContext c, IClusterClient client, string name, string version) => ModelReadyAsync(c, client, name, version));
        app.MapPost("/v2/models/{name}/infer", (HttpContext c, string name) => InferAsync(c, name, null));
        app.MapPost("/v2/models/{name}/versions/{version}/infer", (HttpContext c, string name, string version) => InferAsync(c, name, version));
        return app;
    }

    private static async Task MetadataAsync(HttpContext context, IClusterClient client, string name, string? version)
    {
        if (await FindAsync(context, client, name, version) is not { } model)
        {
            return;
        }

        if (model.State == ModelState.Failed)
        {
            await WriteErrorAsync(context, Unavailable(model));
            return;
        }

        await WriteJsonAsync(context, StatusCodes.Status200OK, w =>
        {
            w.WriteStartObject();
            w.WriteString("name", model.Name);
            w.WriteStartArray("versions");
            w.WriteStringValue(model.Version);
            w.WriteEndArray();
            w.WriteString("platform", model.Kind == "tensor" ? "onnxruntime_onnx" : $"streaminfer_{model.Kind}");
            WriteSpecs(w, "inputs", model.Inputs);
            WriteSpecs(w, "outputs", model.Outputs);
            w.WriteStartObject("parameters");
            w.WriteNumber("max_batch_size", model.MaxBatchSize);
            w.WriteString("state", model.State.ToString().ToLowerInvariant());
            w.WriteStartArray("devices");
            foreach (var device in model.Devices)
            {
                w.WriteStringValue(device);
            }

            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        });
    }

    private static async Task ModelReadyAsync(HttpContext context, IClusterClient client, string name, string? version)
    {
        if (await FindAsync(context, client, name, version) is not { } model)
        {
            return;
        }

        var ready = model.State == ModelState.Ready;
        context.Response.StatusCode = ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
        await context.Response.WriteAsJsonAsync(new { name = model.Name, ready, state = model.State.ToString().ToLowerInvariant() });
    }

    private static async Task InferAsync(HttpContext context, string name, string? version)
    {
        var services = context.RequestServices;
        var options = services.GetRequiredService<IOptions<FrontendOptions>>().Value;
        var loggers = services.GetRequiredService<ILoggerFactory>();
        var max = options.MaxFrameBytes;
        var body = context.Request.ContentLength > max ? null : await PredictEndpoint.ReadBodyAsync(context.Request.Body, max, context.RequestAborted);
        if (body is null)
        {
            await WriteErrorAsync(context, new InferError(ErrorCode.PayloadTooLarge, $"a body may be at most {max} bytes."));
            return;
        }

        // A pinned version is checked before the request is queued: a wrong one costs no device time.
        if (version is not null && await FindAsync(context, services.GetRequiredService<IClusterClient>(), name, version) is null)
        {
            return;
        }

        var (infer, requested, invalid) = Parse(body.Value, name);
        if (invalid is not null)
        {
            await WriteErrorAsync(context, invalid, infer?.Id);
            return;
        }

        var outcome = await PredictEndpoint.SubmitAndWaitAsync(
            context,
            services.GetRequiredService<IClusterClient>(),
            services.GetRequiredService<DeliveryRouter>(),
            services.GetRequiredService<FrontendIdentity>(),
            options,
            services.GetRequiredService<IOptions<ClientSessionOptions>>().Value,
            loggers,
            infer!);
        if (outcome.Abandoned)
        {
            return;
        }

        var id = infer!.Id.Length > 0 ? infer.Id : null;
        if (outcome.Result is not { } result)
        {
            await WriteErrorAsync(context, outcome.Error!, id);
            return;
        }

        if (version is not null && version != result.ModelVersion)
        {
            await WriteErrorAsync(context, new InferError(ErrorCode.UnknownModel, $"model '{name}' serves version {result.ModelVersion}, not {version}."), id);
            return;
        }

        var outputs = result.Outputs;
        if (requested is not null)
        {
            var missing = requested.FirstOrDefault(r => !outputs.Any(o => o.Name == r));
            if (missing is not null)
            {
                await WriteErrorAsync(context, new InferError(ErrorCode.InvalidInput, $"model '{name}' has no output '{missing}' (it has {string.Join(", ", outputs.Select(o => o.Name))})."), id);
                return;
            }

            outputs = [.. outputs.Where(o => requested.Contains(o.Name))];
        }

        await WriteJsonAsync(context, StatusCodes.Status200OK, w =>
        {
            w.WriteStartObject();
            w.WriteString("model_name", result.Model);
            w.WriteString("model_version", result.ModelVersion);
            if (id is not null)
            {
                w.WriteString("id", id);
            }

            w.WriteStartArray("outputs");
            foreach (var output in outputs)
            {
                w.WriteStartObject();
                w.WriteString("name", output.Name);
                w.WriteString("datatype", output.Tensor.ElementType.ToKServe());
                FrameWriter.WriteShapeAndData(w, output.Tensor);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            FrameWriter.WriteTiming(w, result.Timing);
            w.WriteEndObject();
        });
    }

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

        var (inputs, error) = RequestParser.ParseInputs(inputsElement);
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

    private static async Task<ModelInfo?> FindAsync(HttpContext context, IClusterClient client, string name, string? version)
    {
        var model = await client.GetGrain<IModelInfoGrain>(0).GetModelAsync(name);
        if (model is null)
        {
            await WriteErrorAsync(context, new InferError(ErrorCode.UnknownModel, $"no model named '{name}' is served."));
            return null;
        }

        if (version is not null && version != model.Version)
        {
            await WriteErrorAsync(context, new InferError(ErrorCode.UnknownModel, $"model '{name}' serves version {model.Version}, not {version}."));
            return null;
        }

        return model;
    }

    private static InferError Unavailable(ModelInfo model)
        => new(ErrorCode.ModelUnavailable, $"model '{model.Name}' failed to load: {string.Join("; ", model.Errors.Select(e => e.ToString()))}");

    private static void WriteSpecs(Utf8JsonWriter w, string property, IEnumerable<TensorSpec> specs)
    {
        w.WriteStartArray(property);
        foreach (var spec in specs)
        {
            w.WriteStartObject();
            w.WriteString("name", spec.Name);
            w.WriteString("datatype", spec.ElementType.ToKServe());
            w.WriteStartArray("shape");
            foreach (var d in spec.Shape)
            {
                w.WriteNumberValue(d);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    /// <summary>KServe's error body, <c>{"error": message}</c>, with StreamInfer's <c>code</c> (and <c>retry_after_ms</c>) beside it.</summary>
    private static Task WriteErrorAsync(HttpContext context, InferError error, string? id = null)
    {
        FrameWriter.SetRetryAfter(context.Response, error);
        return WriteJsonAsync(context, error.Code.ToHttpStatus(), w =>
        {
            w.WriteStartObject();
            if (id is not null)
            {
                w.WriteString("id", id);
            }

            w.WriteString("error", error.Message);
            w.WriteString("code", error.Code.ToWire());
            if (error.RetryAfterMs is { } retry)
            {
                w.WriteNumber("retry_after_ms", retry);
            }

            w.WriteEndObject();
        });
    }

    private static async Task WriteJsonAsync(HttpContext context, int status, Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(buffer, FrameWriter.Options))
        {
            write(writer);
        }

        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.BodyWriter.WriteAsync(buffer.WrittenMemory, context.RequestAborted);
    }
}
