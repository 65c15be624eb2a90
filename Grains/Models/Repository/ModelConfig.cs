using System.Text.Json;
using System.Text.Json.Serialization;

namespace StreamInfer.Grains.Models.Repository;

/// <summary>
/// A model's <c>config.json</c>, as written (snake_case, Triton-like). Every field is optional but <c>kind</c>;
/// <see cref="ModelRepositoryScanner"/> checks values and turns them into options.
/// </summary>
public sealed class ModelConfig
{
    /// <summary><c>echo</c>, <c>tensor</c> or <c>decoder</c>.</summary>
    public string? Kind { get; set; }

    /// <summary>The version folder to serve; default the highest numbered one.</summary>
    public string? Version { get; set; }

    /// <summary>Most rows in one batch (for a decoder: most sequences decoding at once). [1, 4096], default 32.</summary>
    public int? MaxBatchSize { get; set; }

    /// <summary>Longest the oldest queued request waits for batch-mates; 0 = work-conserving. [0, 10000], default 0.</summary>
    public double? MaxWaitMs { get; set; }

    /// <summary>Most requests queued at the model's batcher. [1, 1000000], default 4096.</summary>
    public int? QueueCapacity { get; set; }

    /// <summary>Batches of this model on its device at once. [1, 16], default 1.</summary>
    public int? MaxConcurrentBatches { get; set; }

    /// <summary>Priority levels, 0 (lowest) to this - 1. [1, 16], default 1.</summary>
    public int? PriorityLevels { get; set; }

    /// <summary>Priority of a request that names none. Default 0.</summary>
    public int? DefaultPriority { get; set; }

    /// <summary>Deadline of a request that sets no timeout. (0, 3600000], default the session's.</summary>
    public double? DefaultTimeoutMs { get; set; }

    /// <summary>
    /// Tensor and echo only: the most tensor payload bytes one request may carry (numbers as their raw bytes, each
    /// string as its UTF-8 bytes plus 4); past it a request is refused with <c>payload_too_large</c>. At least 1;
    /// default none (the frontend's ceiling applies).
    /// </summary>
    public long? MaxRequestBytes { get; set; }

    /// <summary>
    /// Tensor only: the most bytes one batch's inputs take once padded; a batch that would pass it is cut, and a
    /// request that alone passes it is refused with <c>payload_too_large</c>. [1024, 2^40], default
    /// <see cref="DefaultMaxBatchBytes"/>.
    /// </summary>
    public long? MaxBatchBytes { get; set; }

    /// <summary>
    /// The model input that masks padding (e.g. <c>attention_mask</c>): the batcher fills it with 1 over each request's
    /// own positions and 0 over padding, unless the request gives it.
    /// </summary>
    public string? MaskInput { get; set; }

    /// <summary>Input declarations that refine the ONNX file's metadata (names must exist in the model).</summary>
    public List<TensorDeclaration>? Inputs { get; set; }

    /// <summary>Output declarations that refine the ONNX file's metadata; when given, only these outputs are returned.</summary>
    public List<TensorDeclaration>? Outputs { get; set; }

    /// <summary>
    /// Tensor only: the model carries state from one request of a sequence to the next (see <see cref="SequenceConfig"/>);
    /// every request then names its sequence. Null for a stateless model.
    /// </summary>
    public SequenceConfig? Sequence { get; set; }

    /// <summary>Batch sizes to warm up at load; default powers of two up to <see cref="MaxBatchSize"/>.</summary>
    public List<int>? WarmupBatchSizes { get; set; }

    /// <summary>Sizes of dynamic axes during warm-up, by axis name (e.g. <c>{"seq": 16}</c>); default 1.</summary>
    public Dictionary<string, long>? WarmupDims { get; set; }

    /// <summary>Echo only: simulated compute per batch, in ms.</summary>
    public double? FixedDelayMs { get; set; }

    /// <summary>Echo only: simulated compute per request, in ms.</summary>
    public double? PerItemCostMs { get; set; }

    /// <summary>
    /// Decoder only: <c>"bytes"</c> (one token per byte, the built-in tiny-lm's), a tokenizer file in the model's
    /// folder, or null to look for <c>tokenizer.json</c>, then <c>vocab.json</c> + <c>merges.txt</c>.
    /// </summary>
    public string? Tokenizer { get; set; }

    /// <summary>Decoder only: the most tokens (prompt and generated) one sequence may hold. [2, 1048576], default 1024.</summary>
    public int? MaxContextTokens { get; set; }

    /// <summary>Decoder only: the token that ends a generation; default the tokenizer's <c>&lt;|endoftext|&gt;</c>.</summary>
    public int? EosTokenId { get; set; }

    /// <summary>Decoder only: tokens generated when a request sets no <c>max_tokens</c>. [1, 1048576], default 256.</summary>
    public int? DefaultMaxTokens { get; set; }

    /// <summary>
    /// Decoder only: the most prompt tokens prefilled in one step. A longer prompt is prefilled in chunks, so running
    /// streams never wait longer than one chunk's step for their next token. [1, 65536], default 256.
    /// </summary>
    public int? MaxPrefillTokens { get; set; }

    /// <summary>
    /// Decoder only: key/value cache memory per device, in MiB. A sequence reserves its prompt plus its
    /// <c>max_tokens</c> when it joins; requests wait in the queue while the cache is full. [1, 1048576], default 1024.
    /// </summary>
    public int? KvCacheMb { get; set; }

    /// <summary>The default <see cref="MaxBatchBytes"/>: 256 MiB.</summary>
    public const long DefaultMaxBatchBytes = 256L << 20;

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        NumberHandling = JsonNumberHandling.Strict,
    };
}

/// <summary>
/// An input or output declaration: its name, element type (<c>FP32</c>, <c>float32</c>, <c>INT64</c>...), its batch
/// axis (or none, <c>shared</c>) and the dimensions besides the batch axis, each a size, -1 (dynamic), an axis name (dynamic, and padded together with every
/// other axis of that name), or an object <c>{"name": "width", "max": 4096}</c> (dynamic, optionally named, and for an
/// input at most <c>max</c> long: a longer request is refused with <c>invalid_input</c>).
/// </summary>
public sealed class TensorDeclaration
{
    /// <summary>The tensor's name in the ONNX graph.</summary>
    public string? Name { get; set; }

    /// <summary>The element type; when given it must match the model's.</summary>
    public string? Datatype { get; set; }

    /// <summary>
    /// The model's dimensions in order with the batch axis left out (every dimension, for a shared input): numbers,
    /// axis names or <c>{"name", "max"}</c> objects.
    /// </summary>
    public List<JsonElement>? Dims { get; set; }

    /// <summary>The axis requests are stacked on and outputs split along. Default 0.</summary>
    public int? BatchAxis { get; set; }

    /// <summary>
    /// Inputs only: the input has no batch axis (a scalar, or a fixed tensor such as a sample rate). Every request of a
    /// batch gives the same value, fed once; requests that disagree run in different batches.
    /// </summary>
    public bool? Shared { get; set; }

    /// <summary>
    /// Inputs only, numeric or bool: the value of every element of the input in the warm-up run at load (default 0), for
    /// an input zero is not valid for, such as a sample rate.
    /// </summary>
    public double? Warmup { get; set; }
}

/// <summary>
/// A stateful model's <c>sequence</c> section: the state pairs the grid carries from one request of a sequence to the
/// next, the optional control inputs it fills, and how long and how many sequences a batcher keeps.
/// </summary>
public sealed class SequenceConfig
{
    /// <summary>The state pairs: each input is fed from its output of the sequence's previous request.</summary>
    public List<StateDeclaration>? State { get; set; }

    /// <summary>An input (bool or numeric, one value per row) the grid sets to 1 on a sequence's first request, 0 otherwise.</summary>
    public string? StartInput { get; set; }

    /// <summary>An input the grid sets to 1 on a sequence's last request, 0 otherwise.</summary>
    public string? EndInput { get; set; }

    /// <summary>How long a sequence with nothing queued or running keeps its state. [1, 86400000], default 60000.</summary>
    public double? IdleTimeoutMs { get; set; }

    /// <summary>Most sequences one batcher (one device of one silo) holds; a start past it is refused <c>overloaded</c>. [1, 1000000], default 4096.</summary>
    public int? MaxSequences { get; set; }

    /// <summary>A sliding window each sequence keeps over one of the model's outputs, returned with every result of
    /// it; null for none.</summary>
    public WindowConfig? Window { get; set; }
}

/// <summary>
/// A sequence's sliding window: over the last <see cref="Size"/> values of an output (one value per result), its mean
/// and maximum come back with every result; with <see cref="On"/>, the sequence raises an <c>on</c> event when the
/// mean reaches it and an <c>off</c> event when the mean later falls below <see cref="Off"/> (hysteresis).
/// </summary>
public sealed class WindowConfig
{
    /// <summary>The output the window is over: numeric, returned to clients (not a state output).</summary>
    public string? Output { get; set; }

    /// <summary>The values the window holds: the sequence's last this many results. [1, 4096].</summary>
    public int? Size { get; set; }

    /// <summary>The element of a result's row of <see cref="Output"/> that is its value (row-major, from 0); default
    /// the mean of the row's elements (a one-element output's value is its element).</summary>
    public int? Element { get; set; }

    /// <summary>The mean at or above which an off sequence turns on. Default none: no events.</summary>
    public double? On { get; set; }

    /// <summary>The mean below which an on sequence turns off; at most <see cref="On"/>. Default <see cref="On"/>.</summary>
    public double? Off { get; set; }
}

/// <summary>One state pair: the input fed with the state and the output that gives the next state.</summary>
public sealed class StateDeclaration
{
    /// <summary>The input the state is fed into (never sent by clients).</summary>
    public string? Input { get; set; }

    /// <summary>The output the next state is read from (never returned to clients).</summary>
    public string? Output { get; set; }

    /// <summary>Every element of the state at a sequence's start. Default 0.</summary>
    public double? Initial { get; set; }
}
