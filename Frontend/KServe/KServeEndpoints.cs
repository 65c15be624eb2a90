using System.Text.Json;
using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.KServe;

/// <summary>
/// The KServe v2 / Open Inference Protocol over HTTP for tensor models: health, model metadata and readiness, and
/// <c>infer</c> in JSON or with the binary tensor data extension (<see cref="KServeBody"/>, <see cref="KServeResponse"/>). Inference goes through the caller's session and the batchers like every other request. Errors
/// carry the protocol's <c>error</c> string plus StreamInfer's <c>code</c> (and <c>retry_after_ms</c>), with the same
/// HTTP statuses as <c>/predict</c>.
/// </summary>
internal static partial class KServeEndpoints
{
    /// <summary>The protocol extensions served, as <c>GET /v2</c> lists them.</summary>
    internal static readonly string[] Extensions = ["binary_tensor_data"];

    /// <summary>Maps <c>/v2</c>; returns the inference routes, for the filters that apply to inference.</summary>
    public static RouteGroupBuilder MapKServe(this IEndpointRouteBuilder app)
    {
        var v2 = app.MapGroup("/v2");
        v2.MapGet(string.Empty, () => TypedResults.Json(new { name = "streaminfer", version = typeof(KServeEndpoints).Assembly.GetName().Version?.ToString(), extensions = Extensions }));
        v2.MapGet("/health/live", () => TypedResults.Json(new { live = true }));
        v2.MapGet("/health/ready", Operations.HealthEndpoints.ReadyAsync);

        var model = v2.MapGroup("/models/{name}").ServesClients(RefusalShape.Protocol).OnlyClientsModels();
        model.MapGet(string.Empty, (IClusterClient client, ILoggerFactory loggers, string name) => MetadataAsync(client, Logger(loggers), name, null));
        model.MapGet("/versions/{version}", (IClusterClient client, ILoggerFactory loggers, string name, string version) => MetadataAsync(client, Logger(loggers), name, version));
        model.MapGet("/ready", (IClusterClient client, ILoggerFactory loggers, string name) => ModelReadyAsync(client, Logger(loggers), name, null));
        model.MapGet("/versions/{version}/ready", (IClusterClient client, ILoggerFactory loggers, string name, string version) => ModelReadyAsync(client, Logger(loggers), name, version));

        var infer = model.MapGroup(string.Empty);
        infer.MapPost("/infer", (HttpContext c, [AsParameters] InferenceServices services, IClusterClient client, string name) => InferAsync(c, services, client, name, null));
        infer.MapPost("/versions/{version}/infer", (HttpContext c, [AsParameters] InferenceServices services, IClusterClient client, string name, string version) => InferAsync(c, services, client, name, version));
        return infer;
    }

    private static ILogger Logger(ILoggerFactory loggers) => loggers.CreateLogger(typeof(KServeEndpoints));

    private static async Task<IResult> MetadataAsync(IClusterClient client, ILogger logger, string name, string? version)
    {
        var (model, missing) = await FindAsync(client, logger, name, version);
        if (model is null)
        {
            return missing!;
        }

        if (model.State == ModelState.Failed)
        {
            return Error(new InferError(ErrorCode.ModelUnavailable, ModelLoadError.ForClients(model.Name, model.Errors)));
        }

        return JsonBody.Ok(w =>
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

    private static async Task<IResult> ModelReadyAsync(IClusterClient client, ILogger logger, string name, string? version)
    {
        var (model, missing) = await FindAsync(client, logger, name, version);
        if (model is null)
        {
            return missing!;
        }

        var ready = model.State == ModelState.Ready;
        return TypedResults.Json(
            new { name = model.Name, ready, state = model.State.ToString().ToLowerInvariant() },
            statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
    }

    private static async Task<IResult> InferAsync(HttpContext context, InferenceServices services, IClusterClient client, string name, string? version)
    {
        var read = await KServeBody.ReadAsync(context.Request, services.Options.Value, context.RequestAborted);
        if (read.Error is { } refused)
        {
            return Error(refused);
        }

        var body = read.Bytes!;
        var logger = services.Loggers.CreateLogger(typeof(KServeEndpoints));
        try
        {
            var (answer, releasable) = await AnswerAsync(context, services, client, name, version, body, read.HeaderLength);
            return new ReleasingBody(answer, body, releasable, logger, name);
        }
        catch (Exception ex)
        {
            // Whether a batch still reads the inputs is not known.
            body.Abandon();
            if (context.RequestAborted.IsCancellationRequested)
            {
                throw;
            }

            LogFailed(logger, name, ex);
            return Error(Failure);
        }
    }

    /// <summary>The answer, and whether the body may go back to the pool once it is written: when nothing was submitted,
    /// or the grid itself answered (see <see cref="RentedBytes"/>).</summary>
    private static async Task<(IResult Answer, bool Releasable)> AnswerAsync(
        HttpContext context, InferenceServices services, IClusterClient client, string name, string? version, RentedBytes body, int? headerLength)
    {
        // A pinned version is checked before the request is queued: a wrong one costs no device time.
        if (version is not null && await FindAsync(client, services.Loggers.CreateLogger(typeof(KServeEndpoints)), name, version) is { Model: null } pinned)
        {
            return (pinned.Missing!, true);
        }

        var (request, invalid) = KServeRequest.Parse(body.Memory, headerLength, name);
        if (invalid is not null)
        {
            return (Error(invalid), true);
        }

        if (!request!.ReadsBody)
        {
            // Every tensor was parsed into arrays of its own.
            body.Return();
        }

        var infer = request.Infer;
        var outcome = await HttpCall.Start(context, services.Submitter, infer).RunAsync();
        if (outcome.Abandoned)
        {
            return (Results.Empty, false);
        }

        var id = infer.Id.Length > 0 ? infer.Id : null;
        if (outcome.Result is not { } result)
        {
            return (Error(outcome.Error!, id), outcome.FromGrid);
        }

        if (version is not null && version != result.ModelVersion)
        {
            return (Error(new InferError(ErrorCode.UnknownModel, $"model '{name}' serves version {result.ModelVersion}, not {version}."), id), outcome.FromGrid);
        }

        return (KServeResponse.Create(result, id, request.Outputs, name), outcome.FromGrid);
    }

    /// <summary>The model, or the error that answers for its absence (or for a version it does not serve).</summary>
    private static async Task<(ModelInfo? Model, IResult? Missing)> FindAsync(IClusterClient client, ILogger logger, string name, string? version)
    {
        ModelInfo? model;
        try
        {
            model = await client.GetGrain<IModelInfoGrain>(0).GetModelAsync(name);
        }
        catch (Exception ex)
        {
            return (null, Error(GrainCallErrors.For(logger, ex, $"looking up model '{name}'")));
        }

        if (model is null)
        {
            return (null, Error(new InferError(ErrorCode.UnknownModel, $"no model named '{name}' is served.")));
        }

        if (version is not null && version != model.Version)
        {
            return (null, Error(new InferError(ErrorCode.UnknownModel, $"model '{name}' serves version {model.Version}, not {version}.")));
        }

        return (model, null);
    }

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
    internal static JsonBody Error(InferError error, string? id = null) => JsonBody.Error(error, w =>
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

    /// <summary>Writes an answer, then returns the request's body to the pool, or lets go of it when a batch may still
    /// read it: the answer may itself read the body (an echoed input is a slice of it).</summary>
    private sealed class ReleasingBody(IResult answer, RentedBytes body, bool releasable, ILogger logger, string model) : IResult
    {
        public async Task ExecuteAsync(HttpContext context)
        {
            try
            {
                await answer.ExecuteAsync(context);
            }
            catch (Exception ex)
            {
                // Whatever failed may have left the body half read; once the response has started only the connection
                // can say that it broke.
                body.Abandon();
                if (context.Response.HasStarted || context.RequestAborted.IsCancellationRequested)
                {
                    throw;
                }

                LogFailed(logger, model, ex);
                context.Response.Clear();
                await Error(Failure).ExecuteAsync(context);
                return;
            }

            if (releasable)
            {
                body.Return();
            }
            else
            {
                body.Abandon();
            }
        }
    }

    /// <summary>What answers a failure of our own: the log has the exception, the caller only the fact.</summary>
    private static InferError Failure => new(ErrorCode.Internal, "the request could not be answered: an internal error (the server's log has the details).");

    [LoggerMessage(Level = LogLevel.Error, Message = "A KServe infer request to model {Model} failed")]
    private static partial void LogFailed(ILogger logger, string model, Exception ex);
}
