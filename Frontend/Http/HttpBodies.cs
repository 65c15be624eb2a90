using Microsoft.AspNetCore.Http.Features;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.Http;

/// <summary>A request body as read: its bytes, or <c>payload_too_large</c>.</summary>
internal readonly record struct HttpBody(ReadOnlyMemory<byte> Bytes, InferError? TooLarge);

/// <summary>A request body read into a pooled buffer, or <c>payload_too_large</c>; see <see cref="RentedBytes"/> for
/// when the buffer may go back to the pool.</summary>
internal readonly record struct PooledBody(RentedBytes? Bytes, InferError? TooLarge);

/// <summary>Reads request bodies up to a limit: the frame limit for JSON, the binary ceiling for binary tensor data.</summary>
internal static class HttpBodies
{
    private const int ReadSize = 16 * 1024;

    /// <summary>The most rented for a body before its bytes arrive, whatever its <c>Content-Length</c> declares.</summary>
    internal const int FirstRentBytes = 1024 * 1024;

    /// <summary>Reads the body, or stops with <c>payload_too_large</c> as soon as it (or its declared length) passes
    /// <paramref name="max"/> bytes.</summary>
    public static async Task<HttpBody> ReadAsync(HttpRequest request, int max, CancellationToken cancellationToken)
    {
        var (pooled, tooLarge) = await ReadPooledAsync(request, max, $"a body may be at most {max} bytes.", cancellationToken);
        if (pooled is null)
        {
            return new HttpBody(default, tooLarge);
        }

        // These callers parse the body into tensors of their own, so it is copied out once and the buffer reused at once.
        var bytes = pooled.Memory.ToArray();
        pooled.Return();
        return new HttpBody(bytes, null);
    }

    /// <summary>
    /// Reads the body into a pooled buffer, or stops with <c>payload_too_large</c> carrying <paramref name="tooLargeMessage"/>
    /// as soon as it passes <paramref name="max"/> bytes. A declared <c>Content-Length</c> past the limit is refused
    /// before anything is read.
    /// </summary>
    public static async Task<PooledBody> ReadPooledAsync(HttpRequest request, int max, string tooLargeMessage, CancellationToken cancellationToken)
    {
        var tooLarge = new PooledBody(null, new InferError(ErrorCode.PayloadTooLarge, tooLargeMessage));
        if (request.ContentLength > max)
        {
            return tooLarge;
        }

        // Kestrel's own ceiling (30 MB unless configured) would cut a larger allowed body off with a bare 413; with
        // ours in its place, the rest of a refused body is not drained past the limit either.
        if (request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = max + 1L;
        }

        // A declared length is only a promise: the buffer grows as bytes arrive, so a stalled or cut-off body holds at
        // most the first rent however much it declared.
        var body = new RentedBytes((int)Math.Min(request.ContentLength ?? ReadSize, Math.Min(max + 1L, FirstRentBytes)));
        try
        {
            while (true)
            {
                // No read past a declared length's end.
                var left = request.ContentLength - body.Length;
                if (left == 0)
                {
                    return new PooledBody(body, null);
                }

                var read = await request.Body.ReadAsync(body.GetMemory((int)Math.Min(left ?? ReadSize, ReadSize)), cancellationToken);
                if (read == 0)
                {
                    return new PooledBody(body, null);
                }

                body.Advance(read);
                if (body.Length > max)
                {
                    body.Return();
                    return tooLarge;
                }
            }
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            body.Return();
            return tooLarge;
        }
        catch
        {
            body.Return();
            throw;
        }
    }
}
