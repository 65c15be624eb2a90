using System.Buffers;
using System.Globalization;
using System.Text.Json;

namespace StreamInfer.BareEcho;

/// <summary>
/// <c>POST /v2/models/{model}/infer</c> as the echo model answers it: KServe v2 JSON (the inputs back as outputs), or
/// the binary tensor data extension: the body is <c>Inference-Header-Content-Length</c> bytes of JSON header, then the
/// inputs' raw bytes in order; the answer is a header whose outputs name the same tensors with their
/// <c>binary_data_size</c>, then the same raw bytes.
/// </summary>
internal static class KServeEcho
{
    private const string HeaderLength = "Inference-Header-Content-Length";

    public static async Task InferAsync(HttpContext context, string model)
    {
        if (!context.Request.Headers.TryGetValue(HeaderLength, out var lengthText))
        {
            await JsonAsync(context, model);
            return;
        }

        var length = context.Request.ContentLength ?? -1;
        if (length < 0 || length > int.MaxValue
            || !int.TryParse(lengthText, NumberStyles.None, CultureInfo.InvariantCulture, out var headerLength) || headerLength > length)
        {
            await Results.BadRequest(new { error = $"{HeaderLength} and Content-Length must be given and add up." }).ExecuteAsync(context);
            return;
        }

        var body = ArrayPool<byte>.Shared.Rent((int)length);
        try
        {
            await context.Request.Body.ReadExactlyAsync(body.AsMemory(0, (int)length), context.RequestAborted);
            var header = new ArrayBufferWriter<byte>(512);
            WriteBinaryHeader(body.AsMemory(0, headerLength), model, header);
            var raw = body.AsMemory(headerLength, (int)length - headerLength);
            context.Response.Headers[HeaderLength] = header.WrittenCount.ToString(CultureInfo.InvariantCulture);
            context.Response.ContentType = "application/octet-stream";
            context.Response.ContentLength = header.WrittenCount + raw.Length;
            await context.Response.Body.WriteAsync(header.WrittenMemory, context.RequestAborted);
            await context.Response.Body.WriteAsync(raw, context.RequestAborted);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(body);
        }
    }

    private static async Task JsonAsync(HttpContext context, string model)
    {
        using var body = await JsonDocument.ParseAsync(context.Request.Body, default, context.RequestAborted);
        var root = body.RootElement;
        context.Response.ContentType = "application/json";
        await using var writer = new Utf8JsonWriter(context.Response.BodyWriter);
        writer.WriteStartObject();
        writer.WriteString("model_name", model);
        writer.WriteString("model_version", "1");
        if (root.TryGetProperty("id", out var id))
        {
            writer.WriteString("id", id.GetString());
        }

        writer.WritePropertyName("outputs");
        root.GetProperty("inputs").WriteTo(writer);
        writer.WriteEndObject();
        await writer.FlushAsync(context.RequestAborted);
    }

    /// <summary>
    /// The answer's header: each input as an output of the same name, datatype and shape; one given in binary keeps
    /// its <c>binary_data_size</c> (its bytes follow in the same order), one given as JSON data is written back as is.
    /// </summary>
    private static void WriteBinaryHeader(ReadOnlyMemory<byte> header, string model, ArrayBufferWriter<byte> into)
    {
        using var document = JsonDocument.Parse(header);
        var root = document.RootElement;
        using var writer = new Utf8JsonWriter(into);
        writer.WriteStartObject();
        writer.WriteString("model_name", model);
        writer.WriteString("model_version", "1");
        if (root.TryGetProperty("id", out var id))
        {
            writer.WriteString("id", id.GetString());
        }

        writer.WriteStartArray("outputs");
        foreach (var input in root.GetProperty("inputs").EnumerateArray())
        {
            if (!input.TryGetProperty("parameters", out var parameters) || !parameters.TryGetProperty("binary_data_size", out var size))
            {
                input.WriteTo(writer);
                continue;
            }

            writer.WriteStartObject();
            writer.WriteString("name", input.GetProperty("name").GetString());
            writer.WriteString("datatype", input.GetProperty("datatype").GetString());
            writer.WritePropertyName("shape");
            input.GetProperty("shape").WriteTo(writer);
            writer.WriteStartObject("parameters");
            writer.WriteNumber("binary_data_size", size.GetInt64());
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        writer.WriteEndObject();
    }
}
