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
            if (new FileInfo(configPath).Length > FieldChecks.MaxConfigBytes)
            {
                Error(null, $"config.json is larger than {FieldChecks.MaxConfigBytes} bytes.");
                return null;
            }

            config = JsonSerializer.Deserialize<ModelConfig>(File.ReadAllBytes(configPath), ModelConfig.Json);
        }
        catch (JsonException ex)
        {
            var field = ex.Path?.TrimStart('$', '.');
            Error(string.IsNullOrEmpty(field) ? null : field, $"config.json is not valid: {FirstSentence(ex.Message)}");
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The exception's text names the file's absolute path: the report names it relative to the repository.
            Error(null, $"config.json could not be read ({ex.GetType().Name}).");
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

        FieldChecks.Range(config.MaxBatchSize, 1, 4096, "max_batch_size", Error, v => options.MaxBatchSize = v);
        FieldChecks.Range(config.QueueCapacity, 1, 1_000_000, "queue_capacity", Error, v => options.QueueCapacity = v);
        FieldChecks.Range(config.MaxConcurrentBatches, 1, 16, "max_concurrent_batches", Error, v => options.MaxConcurrentBatches = v);
        FieldChecks.Range(config.PriorityLevels, 1, 16, "priority_levels", Error, v => options.PriorityLevels = v);
        FieldChecks.Range(config.DefaultPriority, 0, options.PriorityLevels - 1, "default_priority", Error, v => options.DefaultPriority = v);
        FieldChecks.Milliseconds(config.MaxWaitMs, 0, 10_000, "max_wait_ms", Error, v => options.MaxWait = v);
        FieldChecks.Milliseconds(config.DefaultTimeoutMs, 0.001, 3_600_000, "default_timeout_ms", Error, v => options.DefaultTimeout = v);
        FieldChecks.Milliseconds(config.FixedDelayMs, 0, 10_000, "fixed_delay_ms", Error, v => options.FixedDelay = v);
        FieldChecks.Milliseconds(config.PerItemCostMs, 0, 1_000, "per_item_cost_ms", Error, v => options.PerItemCost = v);
        // A limit above the frontend's ceiling is accepted: the ceiling then refuses first.
        FieldChecks.Bytes(config.MaxRequestBytes, 1, FieldChecks.MaxBytes, "max_request_bytes", Error, v => options.MaxRequestBytes = v);
        FieldChecks.Bytes(config.MaxBatchBytes, 1024, FieldChecks.MaxBytes, "max_batch_bytes", Error, _ => { });
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
            FieldChecks.Range(config.MaxContextTokens, 2, 1 << 20, "max_context_tokens", Error, _ => { });
            FieldChecks.Range(config.DefaultMaxTokens, 1, 1 << 20, "default_max_tokens", Error, _ => { });
            FieldChecks.Range(config.MaxPrefillTokens, 1, 65_536, "max_prefill_tokens", Error, _ => { });
            FieldChecks.Range(config.KvCacheMb, 1, 1 << 20, "kv_cache_mb", Error, _ => { });
            FieldChecks.Range(config.EosTokenId, 0, int.MaxValue, "eos_token_id", Error, _ => { });
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
            if (sizes.Count > FieldChecks.MaxWarmupBatchSizes)
            {
                Error("warmup_batch_sizes", $"may list at most {FieldChecks.MaxWarmupBatchSizes} sizes; got {sizes.Count}.");
            }

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
            // A warm-up runs every size it is given: an unbounded one allocates without limit before the model serves.
            foreach (var (axis, size) in dims)
            {
                if (size is < 1 or > FieldChecks.MaxWarmupDim)
                {
                    Error($"warmup_dims.{axis}", $"must be in [1, {FieldChecks.MaxWarmupDim}]; got {size}.");
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
                options.Sequence = SequenceChecks.Read(sequence, Error);
            }
        }

        DeclarationChecks.Check(config.Inputs, "inputs", Error);
        DeclarationChecks.Check(config.Outputs, "outputs", Error);
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
                if (pinned.Length is 0 or > FieldChecks.MaxVersionLength || pinned.Contains('/', StringComparison.Ordinal) || pinned.Contains('\\', StringComparison.Ordinal) || pinned is "." or "..")
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

    private static string FirstSentence(string message)
    {
        var cut = message.IndexOf(". ", StringComparison.Ordinal);
        return cut > 0 ? message[..(cut + 1)] : message;
    }
}
