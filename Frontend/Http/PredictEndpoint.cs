using System.Buffers;
using System.Text.Json;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Routing;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Grains.Options;

namespace StreamInfer.Frontend.Http;

/// <summary>
/// <c>POST /predict</c>: one request, one JSON response, batched with everything else. The body is an <c>infer</c>
/// frame whose <c>type</c> and <c>id</c> may be left out. The caller is identified by the <c>X-Client-Id</c> header, or
/// else by its address, for rate limiting and backlog.
/// </summary>
internal static partial class PredictEndpoint
{
    public static async Task HandleAsync(
        HttpContext context,
        IClusterClient client,
        DeliveryRouter router,
        FrontendIdentity identity,
        IOptions<FrontendOptions> options,
        IOptions<ClientSessionOptions> sessionOptions,
        ILoggerFactory loggers)
    {
        var max = options.Value.MaxFrameBytes;
        if (context.Request.ContentLength > max)
        {
            await WriteErrorAsync(context, new InferError(ErrorCode.PayloadTooLarge, $"a body may be at most {max} bytes."));
            return;
        }

        var body = await ReadBodyAsync(context.Request.Body, max, context.RequestAborted);
        if (body is null)
        {
            await WriteErrorAsync(context, new InferError(ErrorCode.PayloadTooLarge, $"a body may be at most {max} bytes."));
            return;
        }

        ClientFrame frame;
        try
        {
            frame = RequestParser.Parse(body.Value, defaultType: "infer", requireId: false);
        }
        catch (Exception ex)
        {
            LogParseFailed(loggers.CreateLogger(typeof(PredictEndpoint)), ex);
            await WriteErrorAsync(context, new InferError(ErrorCode.BadRequest, "the body could not be read."));
            return;
        }

        if (frame is ClientFrame.Invalid invalid)
        {
            await WriteErrorAsync(context, new InferError(invalid.Code, invalid.Message), invalid.Id);
            return;
        }

        if (frame is not ClientFrame.Infer infer)
        {
            await WriteErrorAsync(context, new InferError(ErrorCode.BadRequest, "/predict takes 'infer' requests only; cancel by closing the request."));
            return;
        }

        var text = infer.Prompt is null ? null : new System.Text.StringBuilder();
        var outcome = await SubmitAndWaitAsync(context, client, router, identity, options.Value, sessionOptions.Value, loggers, infer, text is null ? null : (t, _) => text.Append(t.Text));
        var publicId = infer.Id.Length > 0 ? infer.Id : outcome.RequestId;
        if (outcome.Abandoned)
        {
            return;
        }

        if (outcome.Done is { } done)
        {
            await WriteJsonAsync(context, w =>
            {
                w.WriteStartObject();
                w.WriteString("id", publicId);
                w.WriteString("model", done.Model);
                w.WriteString("model_version", done.ModelVersion);
                w.WriteString("text", text!.Append(done.Text).ToString());
                w.WriteString("finish_reason", done.FinishReason);
                FrameWriter.WriteUsage(w, done.PromptTokens, done.CompletionTokens);
                FrameWriter.WriteGenerationTiming(w, done);
                w.WriteEndObject();
            });
        }
        else if (outcome.Result is { } result)
        {
            // Encode before answering, so that an output JSON cannot carry still gets a structured error.
            var encoded = new ArrayBufferWriter<byte>(1024);
            try
            {
                using var writer = new Utf8JsonWriter(encoded, FrameWriter.Options);
                writer.WriteStartObject();
                FrameWriter.WriteResultBody(writer, publicId, result);
                writer.WriteEndObject();
            }
            catch (Exception ex)
            {
                LogParseFailed(loggers.CreateLogger(typeof(PredictEndpoint)), ex);
                await WriteErrorAsync(context, new InferError(ErrorCode.Internal, "the result could not be encoded as JSON."), publicId);
                return;
            }

            context.Response.StatusCode = StatusCodes.Status200OK;
            context.Response.ContentType = "application/json";
            await context.Response.BodyWriter.WriteAsync(encoded.WrittenMemory, context.RequestAborted);
        }
        else
        {
            await WriteErrorAsync(context, outcome.Error!, publicId);
        }
    }

    /// <summary>
    /// Submits one request for the HTTP caller (its session is <c>http-</c> + <c>X-Client-Id</c>, or its address) and
    /// waits for its end: a result, an error, or the caller hanging up (<see cref="HttpOutcome.Abandoned"/>, after
    /// which nothing is written). Shared by <c>/predict</c> and KServe v2's <c>infer</c>.
    /// </summary>
    internal static async Task<HttpOutcome> SubmitAndWaitAsync(
        HttpContext context,
        IClusterClient client,
        DeliveryRouter router,
        FrontendIdentity identity,
        FrontendOptions options,
        ClientSessionOptions sessionOptions,
        ILoggerFactory loggers,
        ClientFrame.Infer infer,
        Action<GeneratedToken, DateTimeOffset>? tokens = null,
        TaskCompletionSource? admitted = null)
    {
        var clientId = CallerSession(context);
        var requestId = Guid.NewGuid().ToString("N");
        var session = client.GetGrain<IClientSessionGrain>(clientId);
        var answer = router.AddWaiter(clientId, requestId, tokens);
        Admission admission;
        try
        {
            admission = await session.SubmitAsync(new InferRequest(requestId, infer.Model, infer.Inputs, infer.Prompt, infer.Timeout, identity.Id, infer.Priority, infer.Generation, identity.Observer));
        }
        catch (Exception ex)
        {
            router.RemoveWaiter(clientId, requestId);
            LogSubmitFailed(loggers.CreateLogger(typeof(PredictEndpoint)), ex, clientId);
            // The session may have admitted it before the failure reached us: release it there too.
            _ = CancelQuietlyAsync(session, requestId, loggers);
            return new HttpOutcome(requestId, null, AdmissionFailure.From(ex), false);
        }

        if (admission.Error is { } refused)
        {
            router.RemoveWaiter(clientId, requestId);
            return new HttpOutcome(requestId, null, refused, false);
        }

        router.Placed(clientId, requestId, admission.Silo);
        admitted?.TrySetResult();
        var timeout = admission.Timeout ?? infer.Timeout ?? sessionOptions.DefaultTimeout;
        timeout = timeout < sessionOptions.MaxTimeout ? timeout : sessionOptions.MaxTimeout;
        try
        {
            var delivery = await answer.WaitAsync(timeout + options.WatchdogGrace, context.RequestAborted);
            return new HttpOutcome(requestId, delivery.Result, delivery.Error, false, delivery.Done);
        }
        catch (TimeoutException)
        {
            router.RemoveWaiter(clientId, requestId);
            _ = CancelQuietlyAsync(session, requestId, loggers);
            return new HttpOutcome(requestId, null, new InferError(ErrorCode.DeadlineExceeded, "no answer arrived within the request's deadline."), false);
        }
        catch (OperationCanceledException)
        {
            // The caller hung up: cancel its work; there is nobody to answer.
            router.RemoveWaiter(clientId, requestId);
            _ = CancelQuietlyAsync(session, requestId, loggers);
            return new HttpOutcome(requestId, null, null, true);
        }
    }

    /// <summary>Writes a 200 JSON body.</summary>
    internal static async Task WriteJsonAsync(HttpContext context, Action<Utf8JsonWriter> write)
    {
        var encoded = new ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(encoded, FrameWriter.Options))
        {
            write(writer);
        }

        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        await context.Response.BodyWriter.WriteAsync(encoded.WrittenMemory, context.RequestAborted);
    }

    /// <summary>Writes <c>{"id":..., "error": {"code", "message", "retry_after_ms"}}</c> with the code's HTTP status.</summary>
    internal static async Task WriteErrorAsync(HttpContext context, InferError error, string? id = null)
    {
        context.Response.StatusCode = error.Code.ToHttpStatus();
        context.Response.ContentType = "application/json";
        FrameWriter.SetRetryAfter(context.Response, error);

        var encoded = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(encoded, FrameWriter.Options))
        {
            writer.WriteStartObject();
            if (id is not null)
            {
                writer.WriteString("id", id);
            }

            writer.WriteStartObject("error");
            FrameWriter.WriteErrorFields(writer, error);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        await context.Response.BodyWriter.WriteAsync(encoded.WrittenMemory, context.RequestAborted);
    }

    private static async Task CancelQuietlyAsync(IClientSessionGrain session, string requestId, ILoggerFactory loggers)
    {
        try
        {
            await session.CancelAsync(requestId);
        }
        catch (Exception ex)
        {
            LogCancelFailed(loggers.CreateLogger(typeof(PredictEndpoint)), ex, requestId);
        }
    }

    /// <summary>Reads the body, or returns null as soon as it passes <paramref name="max"/> bytes.</summary>
    internal static async Task<ReadOnlyMemory<byte>?> ReadBodyAsync(Stream body, int max, CancellationToken cancellationToken)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        while (true)
        {
            var memory = buffer.GetMemory(4096);
            var read = await body.ReadAsync(memory, cancellationToken);
            if (read == 0)
            {
                return buffer.WrittenMemory;
            }

            buffer.Advance(read);
            if (buffer.WrittenCount > max)
            {
                return null;
            }
        }
    }

    /// <summary>How an HTTP request ended: a result, a generation's end, an error, or abandoned by its caller.</summary>
    internal sealed record HttpOutcome(string RequestId, InferResult? Result, InferError? Error, bool Abandoned, GenerationDone? Done = null);

    /// <summary>The session of an HTTP caller: <c>http-</c> + <c>X-Client-Id</c>, or its address.</summary>
    internal static string CallerSession(HttpContext context)
        => "http-" + (context.Request.Headers["X-Client-Id"].FirstOrDefault() is { Length: > 0 and <= 128 } header
            ? header
            : context.Connection.RemoteIpAddress?.ToString() ?? "unknown");

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cancelling HTTP request {RequestId} failed")]
    private static partial void LogCancelFailed(ILogger logger, Exception ex, string requestId);

    [LoggerMessage(Level = LogLevel.Error, Message = "A /predict body or result could not be encoded or decoded")]
    private static partial void LogParseFailed(ILogger logger, Exception ex);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Submitting an HTTP request of client {ClientId} failed")]
    private static partial void LogSubmitFailed(ILogger logger, Exception ex, string clientId);
}
