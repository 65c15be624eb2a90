using System.Globalization;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.KServe;

/// <summary>
/// An <c>infer</c> body as read: the bytes (in a pooled buffer), and for a body with binary tensor data the length of
/// its JSON header; or the error that answers it. The buffer is the caller's to return (see <see cref="RentedBytes"/>).
/// </summary>
internal readonly record struct KServeBody(RentedBytes? Bytes, int? HeaderLength, InferError? Error)
{
    /// <summary>
    /// The binary tensor data extension's header: the length in bytes of the JSON that starts the body; the binary
    /// tensor data follows it. The same header on a response says where its binary outputs start.
    /// </summary>
    public const string HeaderName = "Inference-Header-Content-Length";

    /// <summary>
    /// Reads an <c>infer</c> body. Without <see cref="HeaderName"/> it is JSON, up to <see cref="FrontendOptions.MaxFrameBytes"/>;
    /// with it, up to <see cref="FrontendOptions.MaxBinaryBytes"/>, of which the JSON header may take at most
    /// <see cref="FrontendOptions.MaxFrameBytes"/>. Any <c>Content-Type</c> is taken.
    /// </summary>
    public static async Task<KServeBody> ReadAsync(HttpRequest request, FrontendOptions options, CancellationToken cancellationToken)
    {
        if (request.Headers.ContentEncoding is { Count: > 0 } encoding && !string.Equals(encoding.ToString(), "identity", StringComparison.OrdinalIgnoreCase))
        {
            return Refuse(ErrorCode.BadRequest, $"Content-Encoding '{encoding}' is not supported; send the body uncompressed.");
        }

        var headerValues = request.Headers[HeaderName];
        if (headerValues.Count == 0)
        {
            var json = await HttpBodies.ReadPooledAsync(request, options.MaxFrameBytes, $"a body may be at most {options.MaxFrameBytes} bytes.", cancellationToken);
            return new KServeBody(json.Bytes, null, json.TooLarge);
        }

        if (headerValues.Count > 1
            || !long.TryParse(headerValues[0].AsSpan().Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var declared))
        {
            return Refuse(ErrorCode.BadRequest, $"{HeaderName} must be one non-negative integer, the JSON header's length in bytes; got '{headerValues}'.");
        }

        var jsonLimit = JsonLimit(options, declared);
        if (declared > options.MaxFrameBytes)
        {
            return Refuse(ErrorCode.PayloadTooLarge, jsonLimit);
        }

        var (bytes, tooLarge) = await HttpBodies.ReadPooledAsync(
            request,
            options.MaxBinaryBytes,
            $"a body with binary tensor data may be at most {options.MaxBinaryBytes} bytes (Frontend:MaxBinaryBytes).",
            cancellationToken);
        if (bytes is null)
        {
            return new KServeBody(null, null, tooLarge);
        }

        if (declared > bytes.Length)
        {
            bytes.Return();
            return Refuse(ErrorCode.BadRequest, $"{HeaderName} is {declared}, but the body has only {bytes.Length} bytes.");
        }

        // Zero names no header, as Triton reads it: the whole body is the JSON, under the JSON limit.
        if (declared == 0 && bytes.Length > options.MaxFrameBytes)
        {
            bytes.Return();
            return Refuse(ErrorCode.PayloadTooLarge, JsonLimit(options, bytes.Length));
        }

        return new KServeBody(bytes, declared == 0 ? null : (int)declared, null);
    }

    private static string JsonLimit(FrontendOptions options, long length)
        => $"the JSON inference header may be at most {options.MaxFrameBytes} bytes (Frontend:MaxFrameBytes); it has {length}.";

    private static KServeBody Refuse(ErrorCode code, string message) => new(null, null, new InferError(code, message));
}
