using System.Collections.Immutable;

namespace StreamInfer;

/// <summary>A structured error: a protocol <see cref="ErrorCode"/>, a human-readable message, and for
/// <see cref="ErrorCode.RateLimited"/> and <see cref="ErrorCode.Overloaded"/> how long to wait before retrying.</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.InferError")]
public sealed record InferError(
    [property: Id(0)] ErrorCode Code,
    [property: Id(1)] string Message,
    [property: Id(2)] int? RetryAfterMs = null);

/// <summary>Element types a tensor may carry. Values are serialized: never renumber.</summary>
[GenerateSerializer, Alias("StreamInfer.TensorElementType")]
#pragma warning disable CA1720 // The members are named after the element types they stand for, as ONNX names them.
public enum TensorElementType
{
    /// <summary>IEEE 754 single precision.</summary>
    Float32 = 0,
    /// <summary>IEEE 754 half precision.</summary>
    Float16 = 1,
    /// <summary>IEEE 754 double precision.</summary>
    Float64 = 2,
    /// <summary>Signed 64-bit integer.</summary>
    Int64 = 3,
    /// <summary>Signed 32-bit integer.</summary>
    Int32 = 4,
    /// <summary>Signed 16-bit integer.</summary>
    Int16 = 5,
    /// <summary>Signed 8-bit integer.</summary>
    Int8 = 6,
    /// <summary>Unsigned 8-bit integer.</summary>
    UInt8 = 7,
    /// <summary>Boolean, one byte per element (0 or 1).</summary>
    Bool = 8,
    /// <summary>UTF-8 text, carried in <see cref="Tensor.Strings"/>.</summary>
    String = 9,
}
#pragma warning restore CA1720

/// <summary>
/// A dense tensor. Numeric and boolean elements travel as their little-endian bytes in <see cref="Data"/>
/// (one byte per bool); strings travel in <see cref="Strings"/>. Neither is mutated once built. <see cref="Data"/> may be
/// a slice of a larger buffer (a binary request body or frame, read once): whoever built the tensor keeps that buffer
/// unchanged until the request has ended.
/// </summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.Tensor")]
public sealed record Tensor(
    [property: Id(0)] TensorElementType ElementType,
    [property: Id(1)] ImmutableArray<long> Shape,
    [property: Id(2)] ReadOnlyMemory<byte> Data,
    [property: Id(3)] ImmutableArray<string> Strings)
{
    /// <summary>The number of elements the shape describes, or null when a dimension is negative or the product passes
    /// <see cref="TensorTypes.MaxElements"/> (see <see cref="TensorTypes.ElementCount(ImmutableArray{long})"/>).</summary>
    public long? ElementCount => TensorTypes.ElementCount(Shape);
}

/// <summary>A tensor with the input or output name it is bound to.</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.NamedTensor")]
public sealed record NamedTensor(
    [property: Id(0)] string Name,
    [property: Id(1)] Tensor Tensor);

/// <summary>
/// One inference request as a client sent it, after the frontend parsed and structurally checked it.
/// </summary>
/// <param name="RequestId">The client's id for the request, unique among that client's requests in flight.</param>
/// <param name="Model">The model's name.</param>
/// <param name="Inputs">Named input tensors (tensor and echo models).</param>
/// <param name="Prompt">Prompt text (decoder models).</param>
/// <param name="Timeout">How long the client is willing to wait, from admission; null for the configured default.</param>
/// <param name="ReplyTo">The id of the frontend that holds the client's connection: deliveries are grouped and ordered by
/// it.</param>
/// <param name="Priority">The request's priority level, 0 (lowest) up to the model's <c>priority_levels</c> - 1; higher
/// levels are batched first. Null for the model's default.</param>
/// <param name="Generation">How a decoder model generates from <paramref name="Prompt"/>; null for the defaults.</param>
/// <param name="ReplyObserver">The frontend's delivery observer: deliveries are made by calling it (docs/decisions.md
/// D9). A batcher refuses a request without one.</param>
/// <param name="Sequence">The stateful sequence this request belongs to (models with a <c>sequence</c> section); null
/// for a stateless request.</param>
/// <param name="Limits">The limits of the client's API key (or the frontend's priority ceiling), which the session applies
/// from this request on; null for the session's configured defaults.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.InferRequest")]
public sealed record InferRequest(
    [property: Id(0)] string RequestId,
    [property: Id(1)] string Model,
    [property: Id(2)] ImmutableArray<NamedTensor> Inputs,
    [property: Id(3)] string? Prompt,
    [property: Id(4)] TimeSpan? Timeout,
    [property: Id(5)] string ReplyTo,
    [property: Id(6)] int? Priority = null,
    [property: Id(7)] GenerationOptions? Generation = null,
    [property: Id(8)] IDeliveryObserver? ReplyObserver = null,
    [property: Id(9)] SequenceControl? Sequence = null,
    [property: Id(10)] ClientLimits? Limits = null);

/// <summary>
/// A client's own limits, from its API key: every member left null takes the session's configured default. The frontend
/// sends them with each request (a few numbers: no lookup on the session's side); a session whose limits change rebuilds
/// its token bucket (full) and resizes its backlog.
/// </summary>
/// <param name="RatePerSecond">Token-bucket refill rate, requests per second.</param>
/// <param name="Burst">Token-bucket capacity.</param>
/// <param name="BacklogCapacity">Most unfinished requests.</param>
/// <param name="MaxPriority">The highest priority level a request may carry; a higher one (asked, or the model's
/// default) is lowered to it.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.ClientLimits")]
public sealed record ClientLimits(
    [property: Id(0)] double? RatePerSecond = null,
    [property: Id(1)] double? Burst = null,
    [property: Id(2)] int? BacklogCapacity = null,
    [property: Id(3)] int? MaxPriority = null);

/// <summary>
/// Which stateful sequence a request belongs to, and whether it starts or ends it. A sequence's state stays on the
/// batcher that ran its start; its requests run there one per batch, in the order the client sent them.
/// </summary>
/// <param name="Id">The client's name for the sequence (any non-empty string up to 256 characters), unique among the
/// client's running sequences. Batchers key a sequence by the session's key and this id.</param>
/// <param name="Start">This request starts the sequence: its state begins from the model's initial values.</param>
/// <param name="End">The sequence ends with this request: its state is freed once it has run.</param>
/// <param name="Ordered">The transport orders the client's requests (a WebSocket connection, a gRPC stream): a request
/// arriving while its sequence's previous one has not run waits behind it. False for unary HTTP and gRPC calls, where
/// concurrent requests have no order: such a request is refused with <see cref="ErrorCode.SequenceBusy"/>.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.SequenceControl")]
public sealed record SequenceControl(
    [property: Id(0)] string Id,
    [property: Id(1)] bool Start,
    [property: Id(2)] bool End,
    [property: Id(3)] bool Ordered = false);

/// <summary>
/// How a decoder model generates text. Null members take the model's defaults: greedy unless a temperature above zero
/// is given; <see cref="MaxTokens"/> from the model's configuration.
/// </summary>
/// <param name="MaxTokens">The most tokens to generate, at least 1.</param>
/// <param name="Temperature">0 (greedy) to 2.</param>
/// <param name="TopK">Sample among the k most likely tokens; 0 or null for all.</param>
/// <param name="TopP">Sample from the smallest set of tokens whose probability reaches p, in (0, 1].</param>
/// <param name="Seed">The same seed, prompt and settings give the same text.</param>
/// <param name="Stop">Up to four strings that end generation; the stop text is not returned.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.GenerationOptions")]
public sealed record GenerationOptions(
    [property: Id(0)] int? MaxTokens = null,
    [property: Id(1)] double? Temperature = null,
    [property: Id(2)] int? TopK = null,
    [property: Id(3)] double? TopP = null,
    [property: Id(4)] long? Seed = null,
    [property: Id(5)] ImmutableArray<string> Stop = default);

/// <summary>One generated token: its position in the output (from 0), its id, and the text it completes.</summary>
/// <param name="Index">The token's position among the generated tokens, from 0.</param>
/// <param name="TokenId">The token's id in the model's vocabulary.</param>
/// <param name="Text">The text this token adds. Never half a UTF-8 character: a character split across tokens arrives
/// with the token that completes it, so some tokens carry an empty text; text that may be the start of a stop sequence
/// is held back until it is known not to be.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.GeneratedToken")]
public sealed record GeneratedToken(
    [property: Id(0)] int Index,
    [property: Id(1)] int TokenId,
    [property: Id(2)] string Text);

/// <summary>Why a generation ended. Values travel as these strings (OpenAI's, plus StreamInfer's own).</summary>
public static class FinishReasons
{
    /// <summary>The model produced its end-of-text token, or a stop sequence appeared.</summary>
    public const string Stop = "stop";

    /// <summary><c>max_tokens</c> were generated, or the model's context is full.</summary>
    public const string Length = "length";

    /// <summary>The client cancelled or disconnected.</summary>
    public const string Cancelled = "cancelled";

    /// <summary>The request's deadline passed while it was generating.</summary>
    public const string Deadline = "deadline";
}

/// <summary>The end of a generation: why it ended, what it used, and the model version that produced every token.</summary>
/// <param name="Model">The model's name.</param>
/// <param name="ModelVersion">The version that produced every token of the sequence.</param>
/// <param name="FinishReason">One of <see cref="FinishReasons"/>.</param>
/// <param name="PromptTokens">Tokens in the prompt.</param>
/// <param name="CompletionTokens">Tokens generated.</param>
/// <param name="Text">Held-back text released at the end (e.g. a partial stop sequence that never completed); often empty.</param>
/// <param name="QueueMs">How long the request waited before its prefill began.</param>
/// <param name="TimeToFirstTokenMs">From admission to the first token.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.GenerationDone")]
public sealed record GenerationDone(
    [property: Id(0)] string Model,
    [property: Id(1)] string ModelVersion,
    [property: Id(2)] string FinishReason,
    [property: Id(3)] int PromptTokens,
    [property: Id(4)] int CompletionTokens,
    [property: Id(5)] string Text,
    [property: Id(6)] double QueueMs,
    [property: Id(7)] double TimeToFirstTokenMs);

/// <summary>A warning that a client's backlog crossed its high-water mark (80% of capacity).</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.BacklogWarning")]
public sealed record BacklogWarning(
    [property: Id(0)] int Backlog,
    [property: Id(1)] int Capacity);

/// <summary>
/// The answer to <see cref="IClientSessionGrain.SubmitAsync"/>: either accepted (its end will be delivered to the
/// client's frontend) or refused with <see cref="Error"/> (nothing will follow). <see cref="Warning"/> may
/// accompany an acceptance. <see cref="Timeout"/> is the deadline the grid applied, from admission (the request's own,
/// or the model's or session's default, capped): the frontend's watchdog waits that long plus its grace.
/// <see cref="Silo"/> names (as in batcher keys) the silo whose batcher holds the accepted request: when membership
/// declares that silo dead, the frontend ends the request itself rather than wait for an answer that cannot come.
/// <see cref="MayBeHeld"/> marks a refusal made because the batcher could not be reached: it may have queued the
/// request all the same, so a batch may still read its inputs.
/// </summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.Admission")]
public sealed record Admission(
    [property: Id(0)] InferError? Error,
    [property: Id(1)] BacklogWarning? Warning,
    [property: Id(2)] TimeSpan? Timeout = null,
    [property: Id(3)] string? Silo = null,
    [property: Id(4)] bool MayBeHeld = false)
{
    /// <summary>Whether the request was accepted.</summary>
    public bool Accepted => Error is null;

    /// <summary>A refusal.</summary>
    public static Admission Refused(InferError error) => new(error, null);
}

/// <summary>How long a request waited in its batcher's queue, how long its batch ran, and the batch's size.</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.Timing")]
public sealed record Timing(
    [property: Id(0)] double QueueMs,
    [property: Id(1)] double ComputeMs,
    [property: Id(2)] int BatchSize);

/// <summary>A successful result: the model's outputs for one request and the version that produced them; for a
/// request of a sequence whose model keeps a window, the window after it (<see cref="Window"/>).</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.InferResult")]
public sealed record InferResult(
    [property: Id(0)] string Model,
    [property: Id(1)] string ModelVersion,
    [property: Id(2)] ImmutableArray<NamedTensor> Outputs,
    [property: Id(3)] Timing Timing,
    [property: Id(4)] SequenceWindow? Window = null);

/// <summary>
/// A sequence's sliding window over one output of its model (the <c>window</c> of the model's <c>sequence</c> section),
/// once this result's value has entered it, and the event this result raised, if any.
/// </summary>
/// <param name="Output">The output the window is kept over.</param>
/// <param name="Index">This result's place among the sequence's results, from 0.</param>
/// <param name="Count">Values in the window: the sequence's results so far, up to the window's size.</param>
/// <param name="Mean">The mean of the values in the window.</param>
/// <param name="Max">The largest value in the window.</param>
/// <param name="Event">One of <see cref="WindowEvents"/> when the mean crossed a threshold with this result; else null.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.SequenceWindow")]
public sealed record SequenceWindow(
    [property: Id(0)] string Output,
    [property: Id(1)] int Index,
    [property: Id(2)] int Count,
    [property: Id(3)] double Mean,
    [property: Id(4)] double Max,
    [property: Id(5)] string? Event = null);

/// <summary>What a sequence's window raises when its mean crosses a threshold. Values travel as these strings.</summary>
public static class WindowEvents
{
    /// <summary>The mean reached the window's <c>on</c> threshold while the sequence was off (e.g. speech started).</summary>
    public const string On = "on";

    /// <summary>The mean fell below the window's <c>off</c> threshold while the sequence was on (e.g. speech ended).</summary>
    public const string Off = "off";
}

/// <summary>
/// Something for one request of one client. The end of a request sets exactly one of <see cref="Result"/>,
/// <see cref="Error"/> or <see cref="Done"/> (and <see cref="Token"/> when the last step also produced one). A delivery
/// with only <see cref="Token"/> is one step of a generation; the steps of one request arrive in order, before its end.
/// </summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.Delivery")]
public sealed record Delivery(
    [property: Id(0)] string ClientId,
    [property: Id(1)] string RequestId,
    [property: Id(2)] InferResult? Result,
    [property: Id(3)] InferError? Error,
    [property: Id(4)] GeneratedToken? Token = null,
    [property: Id(5)] GenerationDone? Done = null)
{
    /// <summary>Whether this delivery ends its request.</summary>
    public bool IsEnd => Result is not null || Error is not null || Done is not null;
}

/// <summary>
/// Everything one batch step produced for the clients of one frontend: one message per batch per destination, never
/// one per request or per token, so that the grid's messages grow with batches, not with clients.
/// </summary>
/// <param name="Items">The deliveries, in the order the batcher produced them.</param>
/// <param name="ProducedAt">When the batch or decode step that produced them ended (the batcher's clock); the frontend
/// measures its return path from it (<c>streaminfer_delivery_latency_seconds</c>). Default when the sender set none.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.DeliveryBatch")]
public sealed record DeliveryBatch(
    [property: Id(0)] ImmutableArray<Delivery> Items,
    [property: Id(1)] DateTimeOffset ProducedAt = default);

/// <summary>A request handed from a session to a batcher, with the session's admission facts.</summary>
/// <param name="ClientId">The session's key; the batcher tells that session when the request ends.</param>
/// <param name="Request">The request.</param>
/// <param name="AdmittedAt">When the session admitted it (the session's clock).</param>
/// <param name="Deadline">When it must have run by; past it, a queued request ends with <see cref="ErrorCode.DeadlineExceeded"/>.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.BatchItem")]
public sealed record BatchItem(
    [property: Id(0)] string ClientId,
    [property: Id(1)] InferRequest Request,
    [property: Id(2)] DateTimeOffset AdmittedAt,
    [property: Id(3)] DateTimeOffset Deadline);

/// <summary>A snapshot of a session's state, for operations and tests.</summary>
/// <param name="Backlog">Unfinished requests, those waiting behind their sequence's previous request included.</param>
/// <param name="Capacity">The backlog's capacity.</param>
/// <param name="Tokens">Tokens in the rate limit's bucket.</param>
/// <param name="Closed">Whether the client disconnected.</param>
/// <param name="Sequences">Stateful sequences the session knows as running.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.SessionStatus")]
public sealed record SessionStatus(
    [property: Id(0)] int Backlog,
    [property: Id(1)] int Capacity,
    [property: Id(2)] double Tokens,
    [property: Id(3)] bool Closed,
    [property: Id(4)] int Sequences = 0);

/// <summary>A snapshot of a batcher's state, for operations and tests.</summary>
/// <param name="Model">The model.</param>
/// <param name="Silo">The silo the batcher runs on (as silo names appear in batcher keys).</param>
/// <param name="Device">The device it runs its batches on.</param>
/// <param name="Queued">Requests waiting for a batch.</param>
/// <param name="Running">Batches on the device now.</param>
/// <param name="BatchesRun">Batches run since activation.</param>
/// <param name="ItemsRun">Requests run since activation.</param>
/// <param name="RecentBatchSizes">Sizes of the most recent batches, oldest first.</param>
/// <param name="Sequences">Sequences decoding now (decoder models; 0 for others).</param>
/// <param name="Versions">The model versions this batcher holds: the serving one, and any that requests still queued or
/// running started on (during a rollout, the old one until they drain).</param>
/// <param name="Held">Stateful sequences whose state this batcher holds (from their start until their end, expiry or
/// freeing; 0 for models without a <c>sequence</c> section).</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.BatcherStatus")]
public sealed record BatcherStatus(
    [property: Id(0)] string Model,
    [property: Id(7)] string Silo,
    [property: Id(1)] string Device,
    [property: Id(2)] int Queued,
    [property: Id(3)] int Running,
    [property: Id(4)] long BatchesRun,
    [property: Id(5)] long ItemsRun,
    [property: Id(6)] ImmutableArray<int> RecentBatchSizes,
    [property: Id(8)] int Sequences = 0,
    [property: Id(9)] ImmutableArray<string> Versions = default,
    [property: Id(10)] int Held = 0);
