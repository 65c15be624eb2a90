using Microsoft.Extensions.Options;

namespace StreamInfer.Grains.Options;

/// <summary>Where the model repository lives. Section <c>StreamInfer:Repository</c>.</summary>
public sealed class ModelRepositoryOptions
{
    public const string Section = "StreamInfer:Repository";

    /// <summary>
    /// The repository folder: <c>&lt;name&gt;/config.json</c> and <c>&lt;name&gt;/&lt;version&gt;/model.onnx</c> per model.
    /// A relative path is taken from the working directory. A missing folder means no repository models (the built-in
    /// and configured ones still serve). Default <c>models</c>.
    /// </summary>
    public string Path { get; set; } = "models";

    /// <summary>
    /// Whether the built-in <c>tiny-lm</c> decoder is written into the repository at start when it is absent, so the
    /// grid streams tokens with nothing to download. It is generated with deterministic weights, the same bytes on every
    /// machine; an existing <c>tiny-lm</c> folder is left as it is. Default true.
    /// </summary>
    public bool BuiltInTinyLm { get; set; } = true;

    /// <summary>
    /// Whether the built-in <c>vad-lite</c> is written into the repository at start when it is absent: a stateful model
    /// with silero VAD v5's signature (audio chunks in, a speech score out, its state carried from one chunk of a
    /// sequence to the next), whose outputs a client can compute exactly. An existing <c>vad-lite</c> folder is left as
    /// it is. Default true.
    /// </summary>
    public bool BuiltInVadLite { get; set; } = true;

    /// <summary>
    /// How often the repository is polled for changes (a new model or version folder, a removed one, a changed file),
    /// which are then reloaded as by <c>POST /api/reload</c>. Zero (the default) turns the watch off. Range: 0, or
    /// [100 ms, 1 h].
    /// </summary>
    public TimeSpan WatchInterval { get; set; } = TimeSpan.Zero;
}

/// <summary>Checks <see cref="ModelRepositoryOptions"/>, reporting every violation at once.</summary>
public sealed class ModelRepositoryOptionsValidator : IValidateOptions<ModelRepositoryOptions>
{
    public ValidateOptionsResult Validate(string? name, ModelRepositoryOptions options)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(options.Path))
        {
            errors.Add($"{ModelRepositoryOptions.Section}:Path must be non-empty.");
        }

        if (options.WatchInterval != TimeSpan.Zero && (options.WatchInterval < TimeSpan.FromMilliseconds(100) || options.WatchInterval > TimeSpan.FromHours(1)))
        {
            errors.Add($"{ModelRepositoryOptions.Section}:WatchInterval must be 0 (off) or in [100 ms, 1 h]; got {options.WatchInterval}.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

/// <summary>The devices a silo runs models on. Section <c>StreamInfer:Devices</c>.</summary>
public sealed class DeviceOptions
{
    public const string Section = "StreamInfer:Devices";

    /// <summary>
    /// Which GPUs to use: <c>auto</c> (every NVIDIA GPU the machine shows), <c>none</c>, or a comma-separated list of
    /// CUDA device ids (<c>0,1</c>). When no GPU can be used the silo runs models on one CPU device. Default <c>auto</c>.
    /// </summary>
    public string Gpus { get; set; } = "auto";

    /// <summary>ONNX Runtime intra-op threads of the CPU device; 0 sizes it to the machine's cores. Range: [0, 256]. Default 0.</summary>
    public int CpuThreads { get; set; }

    /// <summary>
    /// Whether ONNX Runtime's CPU worker threads spin while waiting for work. Spinning shaves microseconds off each
    /// operator but burns cores that Kestrel and Orleans need when they share the machine. Default false.
    /// </summary>
    public bool AllowSpinning { get; set; }

    /// <summary>Batches waiting for one device (all models together) before callers wait. Range: [1, 4096]. Default 64.</summary>
    public int QueueCapacity { get; set; } = 64;

    /// <summary>
    /// MiB of key/value cache each device gives the decoder models on it, together (the sum of their <c>kv_cache_mb</c>):
    /// a decoder past it does not load on that device, with a reason naming this budget. 0 shares the memory the process
    /// may use among the devices. Range: [0, 16777216] (16 TiB). Default 0.
    /// </summary>
    public long KvCacheBudgetMb { get; set; }
}

/// <summary>Checks <see cref="DeviceOptions"/>, reporting every violation at once.</summary>
public sealed class DeviceOptionsValidator : IValidateOptions<DeviceOptions>
{
    public ValidateOptionsResult Validate(string? name, DeviceOptions options)
    {
        var errors = new List<string>();
        if (options.Gpus is not ("auto" or "none") && !options.Gpus.Split(',').All(g => int.TryParse(g.Trim(), out var id) && id >= 0))
        {
            errors.Add($"{DeviceOptions.Section}:Gpus must be 'auto', 'none' or a list of device ids like '0,1'; got '{options.Gpus}'.");
        }

        if (options.CpuThreads is < 0 or > 256)
        {
            errors.Add($"{DeviceOptions.Section}:CpuThreads must be in [0, 256]; got {options.CpuThreads}.");
        }

        if (options.QueueCapacity is < 1 or > 4096)
        {
            errors.Add($"{DeviceOptions.Section}:QueueCapacity must be in [1, 4096]; got {options.QueueCapacity}.");
        }

        if (options.KvCacheBudgetMb is < 0 or > 1L << 24)
        {
            errors.Add($"{DeviceOptions.Section}:KvCacheBudgetMb must be in [0, 16777216]; got {options.KvCacheBudgetMb}.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
