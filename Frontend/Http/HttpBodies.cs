using System.Buffers;

namespace StreamInfer.Frontend.Http;

/// <summary>A request body as read: its bytes, or <c>payload_too_large</c>.</summary>
internal readonly record struct HttpBody(ReadOnlyMemory<byte> Bytes, InferError? TooLarge);

/// <summary>Reads request bodies up to the frontend's frame limit.</summary>
internal static class HttpBodies
{
    /// <summary>Reads the body, or stops with <c>payload_too_large</c> as soon as it (or its declared length) passes
    /// <paramref name="max"/> bytes.</summary>
    public static async Task<HttpBody> ReadAsync(HttpRequest request, int max, CancellationToken cancellationToken)
    {
        var tooLarge = new HttpBody(default, new InferError(ErrorCode.PayloadTooLarge, $"a body may be at most {max} bytes."));
        if (request.ContentLength > max)
        {
            return tooLarge;
        }

        var buffer = new ArrayBufferWriter<byte>(4096);
        while (true)
        {
            var read = await request.Body.ReadAsync(buffer.GetMemory(4096), cancellationToken);
            if (read == 0)
            {
                return new HttpBody(buffer.WrittenMemory, null);
            }

            buffer.Advance(read);
            if (buffer.WrittenCount > max)
            {
                return tooLarge;
            }
        }
    }
}
