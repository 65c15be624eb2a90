using Microsoft.Extensions.Options;
using StreamInfer.Grains.Models;

namespace StreamInfer.Grains.Options;

/// <summary>The models the silo serves. Section <c>StreamInfer:Models</c>, one sub-section per model name.</summary>
public sealed class ModelsOptions
{
    public const string Section = "StreamInfer:Models";

    /// <summary>Models by name. The built-in <c>echo</c> is added with defaults when not configured.</summary>
    public Dictionary<string, ModelOptions> Models { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>One model: its kind, version and batching knobs.</summary>
public sealed class ModelOptions
{
    /// <summary>
    /// The kind of model, as <c>config.json</c> spells it. Models configured here are <c>echo</c>; ONNX models (tensor,
    /// decoder) come from the model repository, whose <c>config.json</c> names their kind.
    /// </summary>
    public string Kind { get; set; } = "echo";

    /// <summary>The version reported with every result. Default "1".</summary>
    public string Version { get; set; } = "1";

    /// <summary>Largest batch the batcher forms. Range: [1, 4096]. Default 32.</summary>
    public int MaxBatchSize { get; set; } = 32;

    /// <summary>
    /// Longest a queued request waits for batch-mates once it is the oldest in the queue. Zero means work-conserving:
    /// whenever the device is free, run what is queued (batches fill by themselves while it is busy). A short wait is
    /// honoured as given only with <c>Streams:PreciseTimers</c> on; .NET's own timers round it up to their tick.
    /// Range: [0, 10 s]. Default 0 (see docs/decisions.md D4).
    /// </summary>
    public TimeSpan MaxWait { get; set; } = TimeSpan.Zero;

    /// <summary>Most requests the batcher queues; beyond it requests are refused with <c>overloaded</c>. Range: [1, 1000000]. Default 4096.</summary>
    public int QueueCapacity { get; set; } = 4096;

    /// <summary>Batches of this model that may be on its device at once. Range: [1, 16]. Default 1.</summary>
    public int MaxConcurrentBatches { get; set; } = 1;

    /// <summary>Priority levels of the batcher's queue: requests carry 0 (lowest) to this - 1. Range: [1, 16]. Default 1.</summary>
    public int PriorityLevels { get; set; } = 1;

    /// <summary>The priority of a request that names none. Range: [0, PriorityLevels - 1]. Default 0.</summary>
    public int DefaultPriority { get; set; }

    /// <summary>The deadline of a request that sets no <c>timeout_ms</c>; null for the session's default. Range: (0, 1 h].</summary>
    public TimeSpan? DefaultTimeout { get; set; }

    /// <summary>
    /// The most tensor payload bytes one request may carry (numbers as their raw bytes, each string as its UTF-8 bytes
    /// plus 4); past it a request is refused with <c>payload_too_large</c>. Range: at least 1. Default null: no limit
    /// of the model's own (the frontend's ceiling applies). At most 2^40.
    /// </summary>
    public long? MaxRequestBytes { get; set; }

    /// <summary>Simulated compute of an echo model: a fixed delay per batch. Range: [0, 10 s]. Default 0.</summary>
    public TimeSpan FixedDelay { get; set; } = TimeSpan.Zero;

    /// <summary>Simulated compute of an echo model: an added delay per request in the batch. Range: [0, 1 s]. Default 0.</summary>
    public TimeSpan PerItemCost { get; set; } = TimeSpan.Zero;

    /// <summary>
    /// Inputs the model takes, by name; when empty any inputs are accepted (echo). A shape entry of -1 is a dynamic axis.
    /// </summary>
    public Dictionary<string, InputSpec> Inputs { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// A stateful model's sequence limits, from the <c>sequence</c> section of its <c>config.json</c> (repository tensor
    /// models only); null for a stateless model.
    /// </summary>
    public SequenceOptions? Sequence { get; set; }
}

/// <summary>How long and how many stateful sequences a batcher keeps.</summary>
public sealed class SequenceOptions
{
    /// <summary>How long a sequence with nothing queued or running keeps its state before it expires. Range: [1 ms, 1 day]. Default 60 s.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Most sequences one batcher holds; a start past it is refused with <c>overloaded</c>. Range: [1, 1000000]. Default 4096.</summary>
    public int MaxSequences { get; set; } = 4096;

    /// <summary>The sliding window each sequence keeps over an output; null for none.</summary>
    public WindowOptions? Window { get; set; }
}

/// <summary>A sequence's sliding window over one output, and its thresholds (checked when the config is read).</summary>
public sealed class WindowOptions
{
    /// <summary>The output the window is over.</summary>
    public string Output { get; set; } = string.Empty;

    /// <summary>The values the window holds. Range: [1, 4096].</summary>
    public int Size { get; set; } = 1;

    /// <summary>The element of a result's row that is its value; null for the mean of the row's elements.</summary>
    public int? Element { get; set; }

    /// <summary>The mean at or above which an off sequence turns on; null for no events.</summary>
    public double? On { get; set; }

    /// <summary>The mean below which an on sequence turns off; at most <see cref="On"/>.</summary>
    public double Off { get; set; }
}

/// <summary>A declared input: its element type (wire name, e.g. <c>float32</c>) and shape (-1 for a dynamic axis).</summary>
public sealed class InputSpec
{
    public string DType { get; set; } = "float32";

    public long[] Shape { get; set; } = [];
}

/// <summary>Checks every model's options and reports all violations at once, naming the model and field.</summary>
public sealed class ModelsOptionsValidator : IValidateOptions<ModelsOptions>
{
    /// <summary>The largest <see cref="ModelOptions.MaxRequestBytes"/>: 1 TiB, as for a repository model.</summary>
    public const long MaxRequestBytesLimit = 1L << 40;

    public ValidateOptionsResult Validate(string? name, ModelsOptions options)
    {
        var errors = new List<string>();
        foreach (var (model, o) in options.Models)
        {
            var at = $"{ModelsOptions.Section}:{model}";
            if (string.IsNullOrWhiteSpace(model) || model.Contains('/', StringComparison.Ordinal))
            {
                errors.Add($"{at}: a model name must be non-empty and may not contain '/'.");
            }

            if (!ModelKinds.TryParse(o.Kind, out var kind) || kind != ModelKind.Echo)
            {
                errors.Add($"{at}:Kind '{o.Kind}' is not a known kind (known: echo).");
            }

            if (string.IsNullOrWhiteSpace(o.Version))
            {
                errors.Add($"{at}:Version must be non-empty.");
            }

            if (o.MaxBatchSize is < 1 or > 4096)
            {
                errors.Add($"{at}:MaxBatchSize must be in [1, 4096]; got {o.MaxBatchSize}.");
            }

            if (o.MaxWait < TimeSpan.Zero || o.MaxWait > TimeSpan.FromSeconds(10))
            {
                errors.Add($"{at}:MaxWait must be in [0, 10 s]; got {o.MaxWait}.");
            }

            if (o.QueueCapacity is < 1 or > 1_000_000)
            {
                errors.Add($"{at}:QueueCapacity must be in [1, 1000000]; got {o.QueueCapacity}.");
            }

            if (o.MaxConcurrentBatches is < 1 or > 16)
            {
                errors.Add($"{at}:MaxConcurrentBatches must be in [1, 16]; got {o.MaxConcurrentBatches}.");
            }

            if (o.PriorityLevels is < 1 or > 16)
            {
                errors.Add($"{at}:PriorityLevels must be in [1, 16]; got {o.PriorityLevels}.");
            }
            else if (o.DefaultPriority < 0 || o.DefaultPriority >= o.PriorityLevels)
            {
                errors.Add($"{at}:DefaultPriority must be in [0, {o.PriorityLevels - 1}]; got {o.DefaultPriority}.");
            }

            if (o.DefaultTimeout is { } timeout && (timeout <= TimeSpan.Zero || timeout > TimeSpan.FromHours(1)))
            {
                errors.Add($"{at}:DefaultTimeout must be in (0, 1 h]; got {timeout}.");
            }

            if (o.MaxRequestBytes is < 1 or > MaxRequestBytesLimit)
            {
                errors.Add($"{at}:MaxRequestBytes must be in [1, {MaxRequestBytesLimit}]; got {o.MaxRequestBytes}.");
            }

            if (o.FixedDelay < TimeSpan.Zero || o.FixedDelay > TimeSpan.FromSeconds(10))
            {
                errors.Add($"{at}:FixedDelay must be in [0, 10 s]; got {o.FixedDelay}.");
            }

            if (o.PerItemCost < TimeSpan.Zero || o.PerItemCost > TimeSpan.FromSeconds(1))
            {
                errors.Add($"{at}:PerItemCost must be in [0, 1 s]; got {o.PerItemCost}.");
            }

            if (o.Sequence is not null)
            {
                errors.Add($"{at}:Sequence applies to tensor models of the repository only (their config.json's \"sequence\").");
            }

            foreach (var (input, spec) in o.Inputs)
            {
                if (!TensorTypes.TryParse(spec.DType, out _))
                {
                    errors.Add($"{at}:Inputs:{input}:DType '{spec.DType}' is not a known element type.");
                }

                if (spec.Shape.Any(d => d is < -1 or > int.MaxValue))
                {
                    errors.Add($"{at}:Inputs:{input}:Shape may hold only sizes in [0, {int.MaxValue}] and -1 (dynamic).");
                }
            }
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
