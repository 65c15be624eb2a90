using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.Http;

/// <summary>
/// <c>POST /predict</c>: one request, one JSON response, batched with everything else. The body is an <c>infer</c>
/// frame whose <c>type</c> and <c>id</c> may be left out. The caller is identified by the <c>X-Client-Id</c> header, or
/// else by its address, for rate limiting and backlog.
/// </summary>
internal static partial class PredictEndpoint
{
    public static async Task<IResult> HandleAsync(HttpContext context, [AsParameters] InferenceServices services)
    {
        var body = await HttpBodies.ReadAsync(context.Request, services.MaxBodyBytes, context.RequestAborted);
        if (body.TooLarge is { } tooLarge)
        {
            return HttpErrors.Protocol(tooLarge);
        }

        ClientFrame frame;
        try
        {
            frame = RequestParser.Parse(body.Bytes, defaultType: "infer", requireId: false);
        }
        catch (Exception ex)
        {
            LogCodingFailed(services.Loggers.CreateLogger(typeof(PredictEndpoint)), ex);
            return HttpErrors.Protocol(new InferError(ErrorCode.BadRequest, "the body could not be read."));
        }

        switch (frame)
        {
            case ClientFrame.Invalid invalid:
                return HttpErrors.Protocol(new InferError(invalid.Code, invalid.Message), invalid.Id);
            case not ClientFrame.Infer:
                return HttpErrors.Protocol(new InferError(ErrorCode.BadRequest, "/predict takes 'infer' requests only; cancel by closing the request."));
        }

        var call = HttpCall.Start(context, services.Submitter, (ClientFrame.Infer)frame);
        var outcome = await call.RunAsync();
        if (outcome.Abandoned)
        {
            return Results.Empty;
        }

        try
        {
            return outcome switch
            {
                { Done: { } done } => JsonBody.Ok(w => WriteDone(w, call.Id, done)),
                { Result: { } result } => JsonBody.Ok(w =>
                {
                    w.WriteStartObject();
                    FrameWriter.WriteResultBody(w, call.Id, result);
                    w.WriteEndObject();
                }),
                _ => HttpErrors.Protocol(outcome.Error!, call.Id),
            };
        }
        catch (Exception ex)
        {
            LogCodingFailed(services.Loggers.CreateLogger(typeof(PredictEndpoint)), ex);
            return HttpErrors.Protocol(new InferError(ErrorCode.Internal, "the result could not be encoded as JSON."), call.Id);
        }
    }

    private static void WriteDone(System.Text.Json.Utf8JsonWriter w, string id, GenerationDone done)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("model", done.Model);
        w.WriteString("model_version", done.ModelVersion);
        w.WriteString("text", done.Text);
        w.WriteString("finish_reason", done.FinishReason);
        FrameWriter.WriteUsage(w, done.PromptTokens, done.CompletionTokens);
        FrameWriter.WriteGenerationTiming(w, done);
        w.WriteEndObject();
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "A /predict body or result could not be encoded or decoded")]
    private static partial void LogCodingFailed(ILogger logger, Exception ex);
}
