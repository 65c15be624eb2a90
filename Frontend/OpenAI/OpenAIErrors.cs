using System.Text.Json;
using StreamInfer.Frontend.Http;

namespace StreamInfer.Frontend.OpenAI;

/// <summary>OpenAI's error shape, <c>{"error": {"message", "type", "param", "code"}}</c>, with StreamInfer's code (and
/// <c>retry_after_ms</c>) and the code's HTTP status (and <c>Retry-After</c>).</summary>
internal static class OpenAIErrors
{
    public static JsonBody Result(InferError error, string? param = null) => JsonBody.Error(error, w => Write(w, error, param));

    public static void Write(Utf8JsonWriter w, InferError error, string? param)
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
}
