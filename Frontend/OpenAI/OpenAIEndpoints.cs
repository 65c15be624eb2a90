using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Metrics;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Routing;
using StreamInfer.Grains.Options;

namespace StreamInfer.Frontend.OpenAI;

/// <summary>
/// The OpenAI-compatible API for decoder models: <c>POST /v1/completions</c>, <c>POST /v1/chat/completions</c> and
/// <c>GET /v1/models</c>, so existing OpenAI clients work unchanged. <c>"stream": true</c> answers as Server-Sent
/// Events in OpenAI's chunk format, ending with <c>data: [DONE]</c>; errors use OpenAI's error shape
/// (<c>{"error": {"message", "type", "param", "code"}}</c>) with StreamInfer's codes and HTTP statuses. Every answer
/// carries <c>model_version</c> beside OpenAI's fields. A caller that hangs up mid-stream cancels its sequence.
/// </summary>
internal static partial class OpenAIEndpoints
{
    /// <summary>Tokens buffered for an event stream whose reader is slower than generation; past it the request is
    /// cancelled rather than buffered without bound.</summary>
    private const int StreamBufferTokens = 4096;

    public static WebApplication MapOpenAI(this WebApplication app)
    {
        app.MapGet("/v1/models", ModelsAsync);
        app.MapPost("/v1/completions", (HttpContext c) => CompleteAsync(c, chat: false));
        app.MapPost("/v1/chat/completions", (HttpContext c) => CompleteAsync(c, chat: true));
        return app;
    }

    private static async Task ModelsAsync(HttpContext context, IClusterClient client)
    {
        var status = await client.GetGrain<IModelInfoGrain>(0).GetRepositoryAsync();
        await PredictEndpoint.WriteJsonAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            foreach (var model in status.Models.Where(m => m.Kind == "decoder"))
            {
                w.WriteStartObject();
                w.WriteString("id", model.Name);
                w.WriteString("object", "model");
                w.WriteNumber("created", 0);
                w.WriteString("owned_by", "streaminfer");
                w.WriteString("model_version", model.Version);
                w.WriteString("state", model.State.ToString().ToLowerInvariant());
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    private static async Task CompleteAsync(HttpContext context, bool chat)
    {
        var services = context.RequestServices;
        var options = services.GetRequiredService<IOptions<FrontendOptions>>().Value;
        var loggers = services.GetRequiredService<ILoggerFactory>();
        var max = options.MaxFrameBytes;
        var body = context.Request.ContentLength > max ? null : await PredictEndpoint.ReadBodyAsync(context.Request.Body, max, context.RequestAborted);
        if (body is null)
        {
            await WriteErrorAsync(context, new InferError(ErrorCode.PayloadTooLarge, $"a body may be at most {max} bytes."), null);
            return;
        }

        var (request, invalid, param) = OpenAIRequest.Parse(body.Value, chat);
        if (invalid is not null)
        {
            await WriteErrorAsync(context, invalid, param);
            return;
        }

        var infer = new ClientFrame.Infer(string.Empty, request!.Model, [], request.Prompt, request.Timeout, null, request.Generation, request.Stream);
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");

        if (!request.Stream)
        {
            var text = new StringBuilder();
            var outcome = await SubmitAsync(context, infer, (t, _) => text.Append(t.Text), null);
            if (outcome.Abandoned)
            {
                return;
            }

            if (outcome.Done is not { } done)
            {
                await WriteErrorAsync(context, outcome.Error ?? new InferError(ErrorCode.Internal, "the model answered with tensors, not text."), null);
                return;
            }

            text.Append(done.Text);
            await PredictEndpoint.WriteJsonAsync(context, w =>
            {
                w.WriteStartObject();
                w.WriteString("id", id);
                w.WriteString("object", chat ? "chat.completion" : "text_completion");
                w.WriteNumber("created", created);
                w.WriteString("model", done.Model);
                w.WriteString("model_version", done.ModelVersion);
                w.WriteString("system_fingerprint", $"{done.Model}-v{done.ModelVersion}");
                w.WriteStartArray("choices");
                w.WriteStartObject();
                w.WriteNumber("index", 0);
                if (chat)
                {
                    w.WriteStartObject("message");
                    w.WriteString("role", "assistant");
                    w.WriteString("content", text.ToString());
                    w.WriteEndObject();
                }
                else
                {
                    w.WriteString("text", text.ToString());
                }

                w.WriteNull("logprobs");
                w.WriteString("finish_reason", done.FinishReason);
                w.WriteEndObject();
                w.WriteEndArray();
                WriteUsage(w, done);
                w.WriteEndObject();
            });
            return;
        }

        // Streaming: the answer's status and headers wait for the admission, so a refusal is still an HTTP error.
        var tokens = Channel.CreateBounded<(GeneratedToken Token, DateTimeOffset ProducedAt)>(new BoundedChannelOptions(StreamBufferTokens) { SingleReader = true, SingleWriter = true });
        var admitted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var overflow = new Overflow();
        var waiting = SubmitAsync(context, infer, (t, producedAt) => overflow.Observe(tokens.Writer.TryWrite((t, producedAt))), admitted);
        _ = waiting.ContinueWith(_ => overflow.Complete(tokens.Writer), TaskScheduler.Default);
        await Task.WhenAny(admitted.Task, waiting);
        if (!admitted.Task.IsCompleted)
        {
            var refused = await waiting;
            if (!refused.Abandoned)
            {
                await WriteErrorAsync(context, refused.Error ?? new InferError(ErrorCode.Internal, "the request ended before it started."), null);
            }

            return;
        }

        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "text/event-stream; charset=utf-8";
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers["X-Accel-Buffering"] = "no";
        using var sse = new SseWriter(context, id, created, request.Model, chat);
        try
        {
            if (chat)
            {
                await sse.ChunkAsync(role: "assistant", text: string.Empty, finishReason: null, done: null);
            }

            var time = context.RequestServices.GetRequiredService<TimeProvider>();
            await foreach (var (token, producedAt) in tokens.Reader.ReadAllAsync(context.RequestAborted))
            {
                if (overflow.Happened)
                {
                    break;
                }

                if (token.Text.Length > 0)
                {
                    await sse.ChunkAsync(null, token.Text, null, null);
                    if (producedAt != default)
                    {
                        GridMetrics.Delivered(GridMetrics.EventStreamPath, (time.GetUtcNow() - producedAt).TotalSeconds);
                    }
                }
            }

            if (overflow.Happened)
            {
                // As a WebSocket client that does not read is dropped: hanging up cancels the sequence (SubmitAsync
                // sees the abort) and frees what the stream buffered.
                LogSlowStream(loggers.CreateLogger(typeof(OpenAIEndpoints)), StreamBufferTokens);
                context.Abort();
                return;
            }

            var outcome = await waiting;
            if (outcome.Abandoned)
            {
                return;
            }

            if (outcome.Done is { } done)
            {
                if (done.Text.Length > 0)
                {
                    await sse.ChunkAsync(null, done.Text, null, null);
                }

                await sse.ChunkAsync(null, null, done.FinishReason, request.IncludeUsage ? done : null);
            }
            else
            {
                await sse.ErrorAsync(outcome.Error ?? new InferError(ErrorCode.Internal, "the model answered with tensors, not text."));
            }

            await sse.DoneAsync();
        }
        catch (OperationCanceledException)
        {
            // The caller hung up; SubmitAsync has cancelled its sequence.
        }
    }

    private static Task<PredictEndpoint.HttpOutcome> SubmitAsync(HttpContext context, ClientFrame.Infer infer, Action<GeneratedToken, DateTimeOffset> tokens, TaskCompletionSource? admitted)
    {
        var services = context.RequestServices;
        return PredictEndpoint.SubmitAndWaitAsync(
            context,
            services.GetRequiredService<IClusterClient>(),
            services.GetRequiredService<DeliveryRouter>(),
            services.GetRequiredService<FrontendIdentity>(),
            services.GetRequiredService<IOptions<FrontendOptions>>().Value,
            services.GetRequiredService<IOptions<ClientSessionOptions>>().Value,
            services.GetRequiredService<ILoggerFactory>(),
            infer,
            tokens,
            admitted);
    }

    private static void WriteUsage(Utf8JsonWriter w, GenerationDone done) => FrameWriter.WriteUsage(w, done.PromptTokens, done.CompletionTokens);

    /// <summary>OpenAI's error shape, with the HTTP status (and Retry-After) of StreamInfer's code.</summary>
    internal static async Task WriteErrorAsync(HttpContext context, InferError error, string? param)
    {
        context.Response.StatusCode = error.Code.ToHttpStatus();
        FrameWriter.SetRetryAfter(context.Response, error);

        context.Response.ContentType = "application/json";
        var encoded = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(encoded, FrameWriter.Options))
        {
            WriteError(w, error, param);
        }

        await context.Response.BodyWriter.WriteAsync(encoded.WrittenMemory, context.RequestAborted);
    }

    internal static void WriteError(Utf8JsonWriter w, InferError error, string? param)
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("message", error.Message);
        w.WriteString("type", error.Code switch
        {
            ErrorCode.BadRequest or ErrorCode.InvalidInput or ErrorCode.UnknownModel or ErrorCode.PayloadTooLarge => "invalid_request_error",
            ErrorCode.RateLimited or ErrorCode.BacklogFull => "rate_limit_error",
            ErrorCode.Unauthorized => "authentication_error",
            ErrorCode.Overloaded or ErrorCode.ModelUnavailable => "service_unavailable_error",
            _ => "server_error",
        });
        if (param is null)
        {
            w.WriteNull("param");
        }
        else
        {
            w.WriteString("param", param);
        }

        w.WriteString("code", error.Code.ToWire());
        if (error.RetryAfterMs is { } retry)
        {
            w.WriteNumber("retry_after_ms", retry);
        }

        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>Whether the event stream's token buffer overflowed; a write refused after the end does not count.</summary>
    private sealed class Overflow
    {
        private volatile bool _happened;
        private volatile bool _completed;

        public bool Happened => _happened;

        public void Observe(bool written)
        {
            if (!written && !_completed)
            {
                _happened = true;
            }
        }

        public void Complete(ChannelWriter<(GeneratedToken Token, DateTimeOffset ProducedAt)> writer)
        {
            _completed = true;
            writer.TryComplete();
        }
    }

    /// <summary>Writes OpenAI's stream chunks as Server-Sent Events, flushing each.</summary>
    private sealed class SseWriter(HttpContext context, string id, long created, string model, bool chat) : IDisposable
    {
        private static readonly byte[] Data = "data: "u8.ToArray();
        private static readonly byte[] End = "\n\n"u8.ToArray();

        private static readonly byte[] DoneEvent = "data: [DONE]\n\n"u8.ToArray();

        // One writer per stream, reset onto the response's own pipe for each chunk: a chunk is serialized straight into
        // the pipe's buffer, without a buffer, a writer and a closure of its own (bench/decode-grid.sh's SSE row
        // allocated twice the WebSocket row's bytes per token).
        private Utf8JsonWriter? _writer;

        public Task ChunkAsync(string? role, string? text, string? finishReason, GenerationDone? done)
        {
            var w = Begin();
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", chat ? "chat.completion.chunk" : "text_completion");
            w.WriteNumber("created", created);
            w.WriteString("model", model);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            if (chat)
            {
                w.WriteStartObject("delta");
                if (role is not null)
                {
                    w.WriteString("role", role);
                }

                if (text is not null)
                {
                    w.WriteString("content", text);
                }

                w.WriteEndObject();
            }
            else
            {
                w.WriteString("text", text ?? string.Empty);
            }

            w.WriteNull("logprobs");
            if (finishReason is null)
            {
                w.WriteNull("finish_reason");
            }
            else
            {
                w.WriteString("finish_reason", finishReason);
            }

            w.WriteEndObject();
            w.WriteEndArray();
            if (done is not null)
            {
                WriteUsage(w, done);
                w.WriteString("model_version", done.ModelVersion);
            }

            w.WriteEndObject();
            return EndAsync();
        }

        public Task ErrorAsync(InferError error)
        {
            WriteError(Begin(), error, null);
            return EndAsync();
        }

        public async Task DoneAsync()
        {
            await context.Response.BodyWriter.WriteAsync(DoneEvent, context.RequestAborted);
            await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
        }

        public void Dispose()
        {
            // Drops a chunk cut short by an error rather than writing half of it into a response that may be over.
            _writer?.Reset();
            _writer?.Dispose();
        }

        /// <summary>Starts an event: its <c>data: </c> prefix, then the writer for its JSON.</summary>
        private Utf8JsonWriter Begin()
        {
            var body = context.Response.BodyWriter;
            body.Write(Data);
            if (_writer is null)
            {
                _writer = new Utf8JsonWriter(body, FrameWriter.Options);
            }
            else
            {
                _writer.Reset(body);
            }

            return _writer;
        }

        /// <summary>Ends the event and sends it.</summary>
        private async Task EndAsync()
        {
            _writer!.Flush();
            var body = context.Response.BodyWriter;
            body.Write(End);
            await body.FlushAsync(context.RequestAborted);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "An event stream fell {Tokens} tokens behind its generation; the caller was dropped")]
    private static partial void LogSlowStream(ILogger logger, int tokens);
}
