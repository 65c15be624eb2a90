using System.Buffers;
using System.Text.Json;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.Http;

/// <summary>A JSON response encoded before it is sent, so that a body that cannot be encoded still gets an answer.</summary>
internal sealed class JsonBody(int status, ReadOnlyMemory<byte> body, InferError? error = null) : IResult
{
    /// <summary>A 200 body written by <paramref name="write"/>; throws if the content cannot be encoded as JSON.</summary>
    public static JsonBody Ok(Action<Utf8JsonWriter> write) => new(StatusCodes.Status200OK, Encode(write));

    /// <summary>An error body written by <paramref name="write"/>, with the code's HTTP status and <c>Retry-After</c>.</summary>
    public static JsonBody Error(InferError error, Action<Utf8JsonWriter> write) => new(error.Code.ToHttpStatus(), Encode(write), error);

    public Task ExecuteAsync(HttpContext context)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        if (error is not null)
        {
            FrameWriter.SetRetryAfter(context.Response, error);
        }

        return context.Response.BodyWriter.WriteAsync(body, context.RequestAborted).AsTask();
    }

    private static ReadOnlyMemory<byte> Encode(Action<Utf8JsonWriter> write)
    {
        var encoded = new ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(encoded, FrameWriter.Options))
        {
            write(writer);
        }

        return encoded.WrittenMemory;
    }
}
