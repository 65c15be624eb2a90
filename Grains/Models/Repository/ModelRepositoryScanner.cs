using System.Globalization;
using System.Text.Json;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models.Repository;

/// <summary>A model found in the repository whose config is sound; its ONNX file is checked when it loads.</summary>
/// <param name="Name">The folder name.</param>
/// <param name="Kind">Echo, tensor or decoder.</param>
/// <param name="Version">The version that serves.</param>
/// <param name="Options">Batching knobs.</param>
/// <param name="OnnxPath">The full path of <c>model.onnx</c>; null for echo.</param>
/// <param name="OnnxFile">The same, relative to the repository (for error reports).</param>
/// <param name="Config">The config as written.</param>
public sealed record ModelDefinition(string Name, ModelKind Kind, string Version, ModelOptions Options, string? OnnxPath, string? OnnxFile, ModelConfig Config);

/// <summary>
/// Reads a Triton-style model repository: <c>&lt;name&gt;/config.json</c> and <c>&lt;name&gt;/&lt;version&gt;/model.onnx</c>.
/// Checks every model and reports every problem at once (model, file, field, why), in the way of YARP's config
/// validator; a broken model is reported and left out, the others are returned.
/// </summary>
public static class ModelRepositoryScanner
{
    public const string ConfigFile = "config.json";
    public const string OnnxFileName = "model.onnx";

    /// <summary>Scans <paramref name="root"/>. A missing folder is an empty repository.</summary>
    /// <param name="root">The repository folder.</param>
    /// <param name="taken">Names already served from configuration; a repository model may not reuse one.</param>
    public static (List<ModelDefinition> Models, List<ModelLoadError> Errors) Scan(string root, IReadOnlySet<string> taken)
    {
        var models = new List<ModelDefinition>();
        var errors = new List<ModelLoadError>();
        if (!Directory.Exists(root))
        {
            return (models, errors);
        }

        foreach (var folder in Directory.GetDirectories(root).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(folder);
            if (name.StartsWith('.'))
            {
                continue;
            }

            var before = errors.Count;
            var definition = ScanModel(root, name, taken, errors);
            if (definition is not null && errors.Count == before)
            {
                models.Add(definition);
            }
        }

        return (models, errors);
    }

    /// <summary>
    /// Scans one model of the repository at a given version folder (a rollout's target), with every check of
    /// <see cref="Scan"/>. Returns null, with the reasons in the list, when it cannot be served.
    /// </summary>
    public static (ModelDefinition? Model, List<ModelLoadError> Errors) ScanVersion(string root, string name, string version)
    {
        var errors = new List<ModelLoadError>();
        var definition = ScanModel(root, name, new HashSet<string>(), errors, version);
        return (errors.Count == 0 ? definition : null, errors);
    }

    private static ModelDefinition? ScanModel(string root, string name, IReadOnlySet<string> taken, List<ModelLoadError> errors, string? versionOverride = null)
    {
        var configFile = $"{name}/{ConfigFile}";
        void Error(string? field, string reason) => errors.Add(new ModelLoadError(name, configFile, field, reason));

        if (name.Contains('/', StringComparison.Ordinal) || name.Length > 128)
        {
            errors.Add(new ModelLoadError(name, null, null, "a model name may not be longer than 128 characters."));
            return null;
        }

        if (taken.Contains(name))
        {
            errors.Add(new ModelLoadError(name, null, null, "a model of this name is already configured in StreamInfer:Models; the repository's is left out."));
            return null;
        }

        var configPath = Path.Combine(root, name, ConfigFile);
        if (!File.Exists(configPath))
        {
            Error(null, "config.json is missing.");
            return null;
        }

        ModelConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<ModelConfig>(File.ReadAllBytes(configPath), ModelConfig.Json);
        }
        catch (JsonException ex)
        {
            var field = ex.Path?.TrimStart('$', '.');
            Error(string.IsNullOrEmpty(field) ? null : field, $"config.json is not valid: {FirstSentence(ex.Message)}");
            return null;
        }
        catch (IOException ex)
        {
            Error(null, $"config.json could not be read: {ex.Message}");
            return null;
        }

        if (config is null)
        {
            Error(null, "config.json is empty (null).");
            return null;
        }

        var options = new ModelOptions();
        if (ModelKinds.TryParse(config.Kind, out var kind))
        {
            options.Kind = config.Kind!;
        }
        else
        {
            Error("kind", config.Kind is null ? $"is missing (expected {ModelKinds.Expected})." : $"\"{config.Kind}\" is not a known kind (expected {ModelKinds.Expected}).");
        }

        Range(config.MaxBatchSize, 1, 4096, "max_batch_size", Error, v => options.MaxBatchSize = v);
        Range(config.QueueCapacity, 1, 1_000_000, "queue_capacity", Error, v => options.QueueCapacity = v);
        Range(config.MaxConcurrentBatches, 1, 16, "max_concurrent_batches", Error, v => options.MaxConcurrentBatches = v);
        Range(config.PriorityLevels, 1, 16, "priority_levels", Error, v => options.PriorityLevels = v);
        Range(config.DefaultPriority, 0, options.PriorityLevels - 1, "default_priority", Error, v => options.DefaultPriority = v);
        Milliseconds(config.MaxWaitMs, 0, 10_000, "max_wait_ms", Error, v => options.MaxWait = v);
        Milliseconds(config.DefaultTimeoutMs, 0.001, 3_600_000, "default_timeout_ms", Error, v => options.DefaultTimeout = v);
        Milliseconds(config.FixedDelayMs, 0, 10_000, "fixed_delay_ms", Error, v => options.FixedDelay = v);
        Milliseconds(config.PerItemCostMs, 0, 1_000, "per_item_cost_ms", Error, v => options.PerItemCost = v);
        // A limit above the frontend's ceiling is accepted: the ceiling then refuses first.
        Bytes(config.MaxRequestBytes, 1, long.MaxValue, "max_request_bytes", Error, v => options.MaxRequestBytes = v);
        Bytes(config.MaxBatchBytes, 1024, 1L << 40, "max_batch_bytes", Error, _ => { });
        if (kind == ModelKind.Decoder && config.MaxRequestBytes is not null)
        {
            Error("max_request_bytes", "applies to tensor and echo models only.");
        }

        if (kind is ModelKind.Echo or ModelKind.Decoder && config.MaxBatchBytes is not null)
        {
            Error("max_batch_bytes", "applies to tensor models only: only they pad.");
        }
        if (kind == ModelKind.Decoder)
        {
            Range(config.MaxContextTokens, 2, 1 << 20, "max_context_tokens", Error, _ => { });
            Range(config.DefaultMaxTokens, 1, 1 << 20, "default_max_tokens", Error, _ => { });
            Range(config.MaxPrefillTokens, 1, 65_536, "max_prefill_tokens", Error, _ => { });
            Range(config.KvCacheMb, 1, 1 << 20, "kv_cache_mb", Error, _ => { });
            Range(config.EosTokenId, 0, int.MaxValue, "eos_token_id", Error, _ => { });
        }
        else
        {
            foreach (var (field, given) in new[] { ("tokenizer", config.Tokenizer is not null), ("max_context_tokens", config.MaxContextTokens is not null), ("eos_token_id", config.EosTokenId is not null), ("default_max_tokens", config.DefaultMaxTokens is not null), ("max_prefill_tokens", config.MaxPrefillTokens is not null), ("kv_cache_mb", config.KvCacheMb is not null) })
            {
                if (given)
                {
                    Error(field, "applies to decoder models only.");
                }
            }
        }

        if (config.WarmupBatchSizes is { } sizes)
        {
            for (var i = 0; i < sizes.Count; i++)
            {
                if (sizes[i] < 1 || sizes[i] > options.MaxBatchSize)
                {
                    Error($"warmup_batch_sizes[{i}]", $"must be in [1, max_batch_size = {options.MaxBatchSize}]; got {sizes[i]}.");
                }
            }
        }

        if (config.WarmupDims is { } dims)
        {
            foreach (var (axis, size) in dims)
            {
                if (size < 1)
                {
                    Error($"warmup_dims.{axis}", $"must be at least 1; got {size}.");
                }
            }
        }

        if (config.Sequence is { } sequence)
        {
            if (kind != ModelKind.Tensor)
            {
                Error("sequence", "applies to tensor models only.");
            }
            else
            {
                options.Sequence = CheckSequence(sequence, Error);
            }
        }

        CheckDeclarations(config.Inputs, "inputs", Error);
        CheckDeclarations(config.Outputs, "outputs", Error);
        if (kind == ModelKind.Echo && (config.Inputs is not null || config.Outputs is not null || config.MaskInput is not null))
        {
            Error(config.Inputs is not null ? "inputs" : config.Outputs is not null ? "outputs" : "mask_input", "an echo model takes any inputs; declarations are for tensor models.");
        }

        if (kind is ModelKind.Tensor or ModelKind.Decoder && (config.FixedDelayMs is not null || config.PerItemCostMs is not null))
        {
            Error(config.FixedDelayMs is not null ? "fixed_delay_ms" : "per_item_cost_ms", "simulated compute is for echo models only.");
        }

        if (versionOverride is not null)
        {
            config.Version = versionOverride;
        }

        var version = config.Version ?? "1";
        string? onnxPath = null;
        string? onnxFile = null;
        if (kind is ModelKind.Tensor or ModelKind.Decoder)
        {
            if (config.Version is { } pinned)
            {
                if (pinned.Length == 0 || pinned.Contains('/', StringComparison.Ordinal) || pinned.Contains('\\', StringComparison.Ordinal) || pinned is "." or "..")
                {
                    Error("version", $"\"{pinned}\" is not a version folder name.");
                    return null;
                }
            }
            else
            {
                // Triton's default policy: the highest numbered version folder that holds a model.
                var numbered = Directory.GetDirectories(Path.Combine(root, name))
                    .Select(Path.GetFileName)
                    .Where(v => long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                    .OrderByDescending(v => long.Parse(v!, CultureInfo.InvariantCulture))
                    .ToList();
                version = numbered.FirstOrDefault(v => File.Exists(Path.Combine(root, name, v!, OnnxFileName))) ?? numbered.FirstOrDefault() ?? "1";
            }

            onnxFile = $"{name}/{version}/{OnnxFileName}";
            onnxPath = Path.Combine(root, name, version, OnnxFileName);
            if (!File.Exists(onnxPath))
            {
                errors.Add(new ModelLoadError(name, onnxFile, null, "the model file is missing."));
            }
        }

        options.Version = version;
        return new ModelDefinition(name, kind, version, options, onnxPath, onnxFile, config);
    }

    private static void CheckDeclarations(List<TensorDeclaration>? declarations, string field, Action<string?, string> error)
    {
        if (declarations is null)
        {
            return;
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < declarations.Count; i++)
        {
            var d = declarations[i];
            var at = $"{field}[{i}]";
            if (string.IsNullOrEmpty(d.Name))
            {
                error($"{at}.name", "is missing.");
            }
            else if (!seen.Add(d.Name))
            {
                error($"{at}.name", $"'{d.Name}' is declared twice.");
            }

            if (d.Datatype is not null && !TensorTypes.TryParse(d.Datatype, out _))
            {
                error($"{at}.datatype", $"\"{d.Datatype}\" is not a known element type.");
            }

            if (d.BatchAxis is < 0)
            {
                error($"{at}.batch_axis", $"must be at least 0; got {d.BatchAxis}.");
            }

            if (d.Shared == true && field == "outputs")
            {
                error($"{at}.shared", "applies to inputs only: every output carries the batch.");
            }
            else if (d.Shared == true && d.BatchAxis is not null)
            {
                error($"{at}.batch_axis", "a shared input has no batch axis.");
            }

            if (d.Dims is { } dims)
            {
                for (var k = 0; k < dims.Count; k++)
                {
                    var dimAt = $"{at}.dims[{k}]";
                    switch (dims[k].ValueKind)
                    {
                        case JsonValueKind.Number when dims[k].TryGetInt64(out var n) && n >= -1:
                        case JsonValueKind.String when dims[k].GetString() is { Length: > 0 }:
                            break;
                        case JsonValueKind.Object:
                            CheckAxisObject(dims[k], dimAt, error);
                            break;
                        default:
                            error(dimAt, $"must be a size, -1, an axis name or {{\"name\", \"max\"}}; got {dims[k].GetRawText()}.");
                            break;
                    }
                }
            }
        }
    }

    /// <summary>The sequence section's own checks (names against the model are checked when it loads) and its limits.</summary>
    private static SequenceOptions CheckSequence(SequenceConfig sequence, Action<string?, string> error)
    {
        var options = new SequenceOptions();
        Milliseconds(sequence.IdleTimeoutMs, 1, 86_400_000, "sequence.idle_timeout_ms", error, v => options.IdleTimeout = v);
        Range(sequence.MaxSequences, 1, 1_000_000, "sequence.max_sequences", error, v => options.MaxSequences = v);
        options.Window = sequence.Window is { } window ? WindowChecks.Read(window, error) : null;
        if (sequence.State is not { Count: > 0 } pairs)
        {
            error("sequence.state", "is missing: a stateful model names at least one {\"input\", \"output\"} state pair.");
            return options;
        }

        for (var i = 0; i < pairs.Count; i++)
        {
            if (string.IsNullOrEmpty(pairs[i].Input))
            {
                error($"sequence.state[{i}].input", "is missing.");
            }

            if (string.IsNullOrEmpty(pairs[i].Output))
            {
                error($"sequence.state[{i}].output", "is missing.");
            }

            if (pairs[i].Initial is { } initial && !double.IsFinite(initial))
            {
                error($"sequence.state[{i}].initial", $"must be a finite number; got {initial}.");
            }
        }

        return options;
    }

    /// <summary>A dynamic axis written as an object: <c>{"name": "width", "max": 4096}</c>, either key optional.</summary>
    private static void CheckAxisObject(JsonElement dim, string at, Action<string?, string> error)
    {
        foreach (var property in dim.EnumerateObject())
        {
            switch (property.Name)
            {
                case "name" when property.Value.ValueKind != JsonValueKind.String || property.Value.GetString() is not { Length: > 0 }:
                    error($"{at}.name", $"must be a non-empty axis name; got {property.Value.GetRawText()}.");
                    break;
                case "max" when property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetInt64(out var max) || max < 1:
                    error($"{at}.max", $"must be a whole number of at least 1; got {property.Value.GetRawText()}.");
                    break;
                case "name" or "max":
                    break;
                default:
                    error($"{at}.{property.Name}", "is not a field of an axis (expected \"name\" and/or \"max\").");
                    break;
            }
        }
    }

    private static void Range(int? value, int min, int max, string field, Action<string?, string> error, Action<int> set)
    {
        if (value is not { } v)
        {
            return;
        }

        if (v < min || v > max)
        {
            error(field, $"must be in [{min}, {max}]; got {v}.");
        }
        else
        {
            set(v);
        }
    }

    private static void Bytes(long? value, long min, long max, string field, Action<string?, string> error, Action<long> set)
    {
        if (value is not { } v)
        {
            return;
        }

        if (v < min || v > max)
        {
            error(field, $"must be in [{min}, {max}] bytes; got {v}.");
        }
        else
        {
            set(v);
        }
    }

    private static void Milliseconds(double? value, double min, double max, string field, Action<string?, string> error, Action<TimeSpan> set)
    {
        if (value is not { } v)
        {
            return;
        }

        if (!double.IsFinite(v) || v < min || v > max)
        {
            error(field, $"must be in [{min}, {max}] ms; got {v}.");
        }
        else
        {
            set(TimeSpan.FromMilliseconds(v));
        }
    }

    private static string FirstSentence(string message)
    {
        var cut = message.IndexOf(". ", StringComparison.Ordinal);
        return cut > 0 ? message[..(cut + 1)] : message;
    }
}
