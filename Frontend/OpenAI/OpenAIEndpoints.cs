using System.Text.Json;
using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.OpenAI;

/// <summary>
/// The OpenAI-compatible API for decoder models: <c>POST /v1/completions</c>, <c>POST /v1/chat/completions</c> and
/// <c>GET /v1/models</c>, so existing OpenAI clients work unchanged. <c>"stream": true</c> answers as Server-Sent
/// Events in OpenAI's chunk format (<see cref="OpenAIEventStream"/>); errors use OpenAI's error shape
/// (<see cref="OpenAIErrors"/>) with StreamInfer's codes and HTTP statuses. Every answer carries <c>model_version</c>
/// beside OpenAI's fields. A caller that hangs up mid-stream cancels its sequence.
/// </summary>
internal static class OpenAIEndpoints
{
    /// <summary>Maps <c>/v1</c>; returns the inference routes, for the filters that apply to inference.</summary>
    public static RouteGroupBuilder MapOpenAI(this IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1").ServesClients(RefusalShape.OpenAI);
        v1.MapGet("/models", ModelsAsync);
        var completions = v1.MapGroup(string.Empty);
        completions.MapPost("/completions", (HttpContext c, [AsParameters] InferenceServices services) => CompleteAsync(c, services, chat: false));
        completions.MapPost("/chat/completions", (HttpContext c, [AsParameters] InferenceServices services) => CompleteAsync(c, services, chat: true));
        return completions;
    }

    /// <summary>The decoder models served, those the caller's key lists.</summary>
    private static async Task<IResult> ModelsAsync(HttpContext context, IClusterClient client, ILoggerFactory loggers)
    {
        RepositoryStatus status;
        try
        {
            status = await client.GetGrain<IModelInfoGrain>(0).GetRepositoryAsync();
        }
        catch (Exception ex)
        {
            return OpenAIErrors.Result(GrainCallErrors.For(loggers.CreateLogger(typeof(OpenAIEndpoints)), ex, "listing the models"));
        }

        var caller = ClientAuth.Client(context);
        return JsonBody.Ok(w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            foreach (var model in status.Models.Where(m => m.Kind == "decoder" && caller.Refuse(m.Name) is null))
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

    /// <summary>A completion: a JSON answer, or with <c>"stream": true</c> an event stream written as it comes (the
    /// result is then empty).</summary>
    private static async Task<IResult> CompleteAsync(HttpContext context, InferenceServices services, bool chat)
    {
        var body = await HttpBodies.ReadAsync(context.Request, services.MaxBodyBytes, context.RequestAborted);
        if (body.TooLarge is { } tooLarge)
        {
            return OpenAIErrors.Result(tooLarge);
        }

        var (request, invalid, param) = OpenAIRequest.Parse(body.Bytes, chat);
        if (invalid is not null)
        {
            return OpenAIErrors.Result(invalid, param);
        }

        var created = services.Time.GetUtcNow().ToUnixTimeSeconds();
        var id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        if (request!.Stream)
        {
            return await OpenAIEventStream.RunAsync(context, services, request, chat, id, created);
        }

        var outcome = await HttpCall.Start(context, services.Submitter, request.ToInfer()).RunAsync();
        return outcome switch
        {
            { Abandoned: true } => Results.Empty,
            { Done: { } done } => JsonBody.Ok(w => WriteCompletion(w, id, created, chat, done)),
            _ => OpenAIErrors.Result(outcome.Error ?? new InferError(ErrorCode.Internal, "the model answered with tensors, not text.")),
        };
    }

    private static void WriteCompletion(Utf8JsonWriter w, string id, long created, bool chat, GenerationDone done)
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
            w.WriteString("content", done.Text);
            w.WriteEndObject();
        }
        else
        {
            w.WriteString("text", done.Text);
        }

        w.WriteNull("logprobs");
        w.WriteString("finish_reason", done.FinishReason);
        w.WriteEndObject();
        w.WriteEndArray();
        FrameWriter.WriteUsage(w, done.PromptTokens, done.CompletionTokens);
        w.WriteEndObject();
    }
}
