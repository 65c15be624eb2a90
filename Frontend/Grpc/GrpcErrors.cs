using System.Globalization;
using Grpc.Core;
using StreamInfer.Frontend.Grpc.V2;

namespace StreamInfer.Frontend.Grpc;

/// <summary>
/// The protocol's errors over gRPC: a unary call fails with the code's status and the message, StreamInfer's code in
/// the <c>streaminfer-code</c> trailer and the retry hint in <c>retry-after-ms</c>; a request on a stream is answered
/// with <c>error_message</c> and the same two as parameters of its <c>infer_response</c>.
/// </summary>
internal static class GrpcErrors
{
    /// <summary>The trailer (and stream parameter) that carries StreamInfer's error code, e.g. <c>invalid_input</c>.</summary>
    public const string CodeKey = "streaminfer-code";

    /// <summary>The trailer that carries <c>retry_after_ms</c>.</summary>
    public const string RetryAfterKey = "retry-after-ms";

    /// <summary>The stream parameters' names: parameters are snake_case, as every other one.</summary>
    public const string CodeParameter = "streaminfer_code";

    public const string RetryAfterParameter = "retry_after_ms";

    /// <summary>The gRPC status of a protocol code.</summary>
    public static StatusCode ToStatusCode(this ErrorCode code) => code switch
    {
        ErrorCode.BadRequest or ErrorCode.InvalidInput => StatusCode.InvalidArgument,
        ErrorCode.UnknownModel or ErrorCode.UnknownSequence => StatusCode.NotFound,
        ErrorCode.SequenceExists => StatusCode.AlreadyExists,
        ErrorCode.SequenceBusy => StatusCode.FailedPrecondition,
        ErrorCode.RateLimited or ErrorCode.BacklogFull or ErrorCode.PayloadTooLarge => StatusCode.ResourceExhausted,
        ErrorCode.Overloaded or ErrorCode.ModelUnavailable => StatusCode.Unavailable,
        ErrorCode.DeadlineExceeded => StatusCode.DeadlineExceeded,
        ErrorCode.Unauthorized => StatusCode.Unauthenticated,
        ErrorCode.Cancelled => StatusCode.Cancelled,
        _ => StatusCode.Internal,
    };

    /// <summary>The exception that fails a unary call with <paramref name="error"/>.</summary>
    public static RpcException Exception(InferError error)
    {
        var trailers = new Metadata { { CodeKey, error.Code.ToWire() } };
        if (error.RetryAfterMs is { } retry)
        {
            trailers.Add(RetryAfterKey, retry.ToString(CultureInfo.InvariantCulture));
        }

        return new RpcException(new Status(error.Code.ToStatusCode(), error.Message), trailers);
    }

    /// <summary>A stream's answer to one request that failed, its last: its id and model, the message and StreamInfer's
    /// code.</summary>
    public static ModelStreamInferResponse StreamError(string id, string model, InferError error)
    {
        var response = new ModelInferResponse { Id = id, ModelName = model };
        response.Parameters.Add(GrpcResponses.FinalParameter, new InferParameter { BoolParam = true });
        response.Parameters.Add(CodeParameter, new InferParameter { StringParam = error.Code.ToWire() });
        if (error.RetryAfterMs is { } retry)
        {
            response.Parameters.Add(RetryAfterParameter, new InferParameter { Int64Param = retry });
        }

        return new ModelStreamInferResponse { ErrorMessage = error.Message, InferResponse = response };
    }
}
