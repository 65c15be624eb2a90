using System.Buffers;
using System.Text.Json;

namespace StreamInfer.BareEcho;

/// <summary>The JSON answers: an <c>infer</c> frame or body in, its inputs back as the outputs.</summary>
internal static class JsonEcho
{
    /// <summary>Writes the result frame for the <c>infer</c> frame <paramref name="frame"/> into <paramref name="output"/>.</summary>
    public static void WriteResult(ReadOnlyMemory<byte> frame, ArrayBufferWriter<byte> output)
    {
        using var document = JsonDocument.Parse(frame);
        output.ResetWrittenCount();
        using var writer = new Utf8JsonWriter(output);
        WriteResult(document.RootElement, writer);
    }

    /// <summary>The result frame for the <c>infer</c> frame (or binary frame header) <paramref name="root"/>: its inputs as the outputs.</summary>
    public static void WriteResult(JsonElement root, Utf8JsonWriter writer)
    {
        writer.WriteStartObject();
        writer.WriteString("type", "result");
        writer.WriteString("id", root.GetProperty("id").GetString());
        writer.WriteString("model", root.GetProperty("model").GetString());
        writer.WriteString("model_version", "1");
        writer.WritePropertyName("outputs");
        root.GetProperty("inputs").WriteTo(writer);
        writer.WriteEndObject();
    }

    /// <summary>The same answer over HTTP, for the /predict baseline: parse the infer body, write the result back.</summary>
    public static async Task PredictAsync(HttpContext context)
    {
        using var body = await JsonDocument.ParseAsync(context.Request.Body, default, context.RequestAborted);
        var root = body.RootElement;
        context.Response.ContentType = "application/json";
        await using var writer = new Utf8JsonWriter(context.Response.BodyWriter);
        writer.WriteStartObject();
        writer.WriteString("id", root.TryGetProperty("id", out var id) ? id.GetString() : null);
        writer.WriteString("model", root.GetProperty("model").GetString());
        writer.WriteString("model_version", "1");
        writer.WritePropertyName("outputs");
        root.GetProperty("inputs").WriteTo(writer);
        writer.WriteEndObject();
        await writer.FlushAsync(context.RequestAborted);
    }
}
