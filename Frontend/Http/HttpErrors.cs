using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.Http;

/// <summary>The protocol's HTTP error: <c>{"id"?, "error": {"code", "message", "retry_after_ms"?}}</c> with the code's status.</summary>
internal static class HttpErrors
{
    public static JsonBody Protocol(InferError error, string? id = null) => JsonBody.Error(error, w =>
    {
        w.WriteStartObject();
        if (id is not null)
        {
            w.WriteString("id", id);
        }

        w.WriteStartObject("error");
        FrameWriter.WriteErrorFields(w, error);
        w.WriteEndObject();
        w.WriteEndObject();
    });

    /// <summary>Writes <see cref="Protocol"/>'s error where a handler answers outside a result (filters, middleware).</summary>
    public static Task WriteAsync(HttpContext context, InferError error) => Protocol(error).ExecuteAsync(context);
}
