namespace StreamInfer;

/// <summary>
/// The error codes of the public protocol (docs/protocol.md). The wire form is the snake_case name given by
/// <see cref="ErrorCodes.ToWire"/>; the numeric values are serialized between silos and must never be renumbered.
/// </summary>
[GenerateSerializer, Alias("StreamInfer.ErrorCode")]
public enum ErrorCode
{
    /// <summary>The frame or body is not a well-formed request (bad JSON, missing field, unknown type, duplicate id).</summary>
    BadRequest = 0,
    /// <summary>No model of that name is served.</summary>
    UnknownModel = 1,
    /// <summary>The request's inputs do not match what the model takes; the message names the input.</summary>
    InvalidInput = 2,
    /// <summary>The frame or body exceeds the configured size limit.</summary>
    PayloadTooLarge = 3,
    /// <summary>The client's token bucket is empty; retry after <c>retry_after_ms</c>.</summary>
    RateLimited = 4,
    /// <summary>The client's backlog of unfinished requests is full.</summary>
    BacklogFull = 5,
    /// <summary>The model's queue is full or its expected wait exceeds the request's deadline; retry after <c>retry_after_ms</c>.</summary>
    Overloaded = 6,
    /// <summary>The request's deadline passed before it could run.</summary>
    DeadlineExceeded = 7,
    /// <summary>The client cancelled the request (or closed its connection).</summary>
    Cancelled = 8,
    /// <summary>The model exists but cannot serve right now (not loaded, its silo is gone).</summary>
    ModelUnavailable = 9,
    /// <summary>The client did not authenticate.</summary>
    Unauthorized = 10,
    /// <summary>An unexpected failure inside the grid.</summary>
    Internal = 11,
    /// <summary>A request names a sequence that was never started, has ended, expired, or was lost with its silo: start
    /// it again.</summary>
    UnknownSequence = 12,
    /// <summary>A start names a sequence that is already running.</summary>
    SequenceExists = 13,
    /// <summary>A sequence's request arrived while its previous one had not run, where nothing orders the two (unary
    /// HTTP or gRPC calls).</summary>
    SequenceBusy = 14,
    /// <summary>The caller is known or needs no key, but this request is not allowed (a WebSocket upgrade from a web
    /// page of another origin).</summary>
    Forbidden = 15,
    /// <summary>The body's content type is not one the endpoint takes (an operator endpoint takes only
    /// <c>application/json</c>).</summary>
    UnsupportedMediaType = 16,
}

/// <summary>Wire names and HTTP statuses of <see cref="ErrorCode"/>.</summary>
public static class ErrorCodes
{
    /// <summary>The snake_case name used in JSON frames and bodies.</summary>
    public static string ToWire(this ErrorCode code) => code switch
    {
        ErrorCode.BadRequest => "bad_request",
        ErrorCode.UnknownModel => "unknown_model",
        ErrorCode.InvalidInput => "invalid_input",
        ErrorCode.PayloadTooLarge => "payload_too_large",
        ErrorCode.RateLimited => "rate_limited",
        ErrorCode.BacklogFull => "backlog_full",
        ErrorCode.Overloaded => "overloaded",
        ErrorCode.DeadlineExceeded => "deadline_exceeded",
        ErrorCode.Cancelled => "cancelled",
        ErrorCode.ModelUnavailable => "model_unavailable",
        ErrorCode.Unauthorized => "unauthorized",
        ErrorCode.UnknownSequence => "unknown_sequence",
        ErrorCode.SequenceExists => "sequence_exists",
        ErrorCode.SequenceBusy => "sequence_busy",
        ErrorCode.Forbidden => "forbidden",
        ErrorCode.UnsupportedMediaType => "unsupported_media_type",
        _ => "internal",
    };

    /// <summary>The HTTP status an HTTP endpoint answers with for this code.</summary>
    public static int ToHttpStatus(this ErrorCode code) => code switch
    {
        ErrorCode.BadRequest or ErrorCode.InvalidInput => 400,
        ErrorCode.Unauthorized => 401,
        ErrorCode.Forbidden => 403,
        ErrorCode.UnknownModel or ErrorCode.UnknownSequence => 404,
        ErrorCode.SequenceExists or ErrorCode.SequenceBusy => 409,
        ErrorCode.PayloadTooLarge => 413,
        ErrorCode.UnsupportedMediaType => 415,
        ErrorCode.RateLimited or ErrorCode.BacklogFull => 429,
        ErrorCode.Overloaded or ErrorCode.ModelUnavailable => 503,
        ErrorCode.DeadlineExceeded => 504,
        // 499 is the de-facto "client closed request" status; only seen when a client cancels its own request.
        ErrorCode.Cancelled => 499,
        _ => 500,
    };
}
