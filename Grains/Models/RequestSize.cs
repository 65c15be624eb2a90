namespace StreamInfer.Grains.Models;

/// <summary>A request's tensor payload, measured as the binary transports carry it, against a model's limit.</summary>
internal static class RequestSize
{
    /// <summary>
    /// The payload bytes of every input: numbers as their raw bytes, each string as its UTF-8 bytes plus the 4-byte
    /// length that precedes it in the raw layout.
    /// </summary>
    public static long Payload(InferRequest request)
    {
        long bytes = 0;
        foreach (var input in request.Inputs)
        {
            bytes += input.Tensor.RawByteSize();
        }

        return bytes;
    }

    /// <summary>
    /// <c>payload_too_large</c> when the request carries more than <paramref name="max"/> bytes (null: no limit);
    /// otherwise null.
    /// </summary>
    public static InferError? Check(string model, InferRequest request, long? max)
    {
        if (max is not { } limit || request.Inputs.IsDefaultOrEmpty)
        {
            return null;
        }

        var bytes = Payload(request);
        return bytes > limit
            ? new InferError(ErrorCode.PayloadTooLarge, $"the request carries {bytes} bytes of tensor data; model '{model}' takes at most {limit} (max_request_bytes).")
            : null;
    }
}
