using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Models.Repository;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models;

/// <summary>
/// A model as this silo serves it: its options, its state, and its loaded instance on each device, leased (see
/// <see cref="ModelLease"/>) so that a version that stops serving is released only once its last request has ended.
/// </summary>
public sealed record ModelEntry(
    string Name,
    string Kind,
    string Version,
    ModelOptions Options,
    ModelState State,
    ImmutableArray<ModelLoadError> Errors,
    FrozenDictionary<string, ModelLease> Leases)
{
    /// <summary>The instance on each device.</summary>
    public FrozenDictionary<string, IInferenceModel> Instances { get; } = Leases.ToFrozenDictionary(kv => kv.Key, kv => kv.Value.Model, StringComparer.Ordinal);

    /// <summary>Any one loaded instance (they share a signature), or null.</summary>
    public IInferenceModel? Any => Instances.Values.FirstOrDefault();

    /// <summary>The metadata the frontends show (KServe v2).</summary>
    public ModelInfo ToInfo() => new(
        Name,
        Kind,
        Version,
        State,
        Errors,
        Any?.Inputs ?? [],
        Any?.Outputs ?? [],
        Options.MaxBatchSize,
        [.. Instances.Keys.Order(StringComparer.Ordinal)]);
}

/// <summary>
/// The models this silo serves: the built-in <c>echo</c>, those configured under <c>StreamInfer:Models</c>, and the
/// model repository's. The repository is scanned at construction (so every name is known at once); ONNX models then
/// load and warm up on each device in the background (<see cref="LoadAsync"/>) and become ready one by one. The
/// catalog is an immutable snapshot swapped whole behind one reference, so readers never lock.
/// </summary>
public sealed partial class ModelCatalog : IDisposable
{
    public const string BuiltInEcho = "echo";

    private readonly DeviceRegistry _devices;
    private readonly ILogger<ModelCatalog> _logger;
    private readonly List<ModelDefinition> _pending;
    private readonly TaskCompletionSource _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object _writeLock = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Model, string Version), ModelEntry> _prepared = new();
    private readonly HashSet<string> _configured;
    private volatile Snapshot _snapshot;
    private int _roundRobin;

    public ModelCatalog(IOptions<ModelsOptions> options, IOptions<ModelRepositoryOptions> repository, DeviceRegistry devices, ILogger<ModelCatalog> logger)
    {
        _devices = devices;
        _logger = logger;
        var entries = new Dictionary<string, ModelEntry>(StringComparer.Ordinal);
        var configured = new Dictionary<string, ModelOptions>(options.Value.Models, StringComparer.Ordinal);
        configured.TryAdd(BuiltInEcho, new ModelOptions());
        foreach (var (name, o) in configured)
        {
            entries[name] = Echo(name, o);
        }

        _configured = [.. configured.Keys];

        RepositoryPath = Path.GetFullPath(repository.Value.Path);
        if (repository.Value.BuiltInTinyLm)
        {
            try
            {
                if (TinyLm.EnsureIn(RepositoryPath))
                {
                    LogTinyLmWritten(_logger, Path.Combine(RepositoryPath, TinyLm.Name));
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                LogTinyLmFailed(_logger, ex, RepositoryPath);
            }
        }

        var (definitions, errors) = ModelRepositoryScanner.Scan(RepositoryPath, entries.Keys.ToHashSet(StringComparer.Ordinal));
        _pending = [];
        foreach (var definition in definitions)
        {
            if (definition.Kind == "echo")
            {
                entries[definition.Name] = Echo(definition.Name, definition.Options);
            }
            else
            {
                _pending.Add(definition);
                entries[definition.Name] = new ModelEntry(definition.Name, definition.Kind, definition.Version, definition.Options, ModelState.Loading, [], FrozenDictionary<string, ModelLease>.Empty);
            }
        }

        // A model whose config is broken still has a name: it is listed as failed, with its reasons.
        foreach (var failed in errors.GroupBy(e => e.Model, StringComparer.Ordinal))
        {
            if (!entries.ContainsKey(failed.Key))
            {
                entries[failed.Key] = new ModelEntry(failed.Key, "?", "?", new ModelOptions(), ModelState.Failed, [.. failed], FrozenDictionary<string, ModelLease>.Empty);
            }
        }

        _snapshot = new Snapshot(entries.ToFrozenDictionary(StringComparer.Ordinal), [.. errors], _pending.Count > 0);
        if (_pending.Count == 0)
        {
            _loaded.TrySetResult();
        }
    }

    /// <summary>The repository folder, resolved.</summary>
    public string RepositoryPath { get; }

    /// <summary>Completes when every repository model has loaded or failed.</summary>
    public Task Loaded => _loaded.Task;

    public IEnumerable<string> Names => _snapshot.Models.Keys;

    /// <summary>Every model and every problem the repository scan and load found.</summary>
    public RepositoryStatus Status
    {
        get
        {
            var s = _snapshot;
            return new RepositoryStatus([.. s.Models.Values.OrderBy(m => m.Name, StringComparer.Ordinal).Select(m => m.ToInfo())], s.Errors, s.Loading);
        }
    }

    public bool TryGet(string name, out ModelEntry entry) => _snapshot.Models.TryGetValue(name, out entry!);

    /// <summary>The device a new request of a ready model goes to: its only device, or the next in turn.</summary>
    public string? PickDevice(ModelEntry entry)
    {
        var devices = entry.Instances.Keys;
        return devices.Length switch
        {
            0 => null,
            1 => devices[0],
            _ => devices[(int)((uint)Interlocked.Increment(ref _roundRobin) % (uint)devices.Length)],
        };
    }

    /// <summary>
    /// Loads every repository model on every device, warms it at the batch sizes it will see, and makes it ready;
    /// then logs one report of everything that failed. Sessions are created on the device's own thread.
    /// </summary>
    public async Task LoadAsync(CancellationToken cancellationToken)
    {
        try
        {
            foreach (var definition in _pending)
            {
                cancellationToken.ThrowIfCancellationRequested();
                await LoadDefinitionAsync(definition, stillLoading: definition != _pending[^1]);
            }
        }
        finally
        {
            lock (_writeLock)
            {
                _snapshot = _snapshot with { Loading = false };
            }

            var s = _snapshot;
            if (s.Errors.Length > 0)
            {
                LogRepositoryErrors(_logger, RepositoryPath, s.Errors.Length, string.Join(Environment.NewLine, s.Errors.Select(e => "  " + e)));
            }

            _loaded.TrySetResult();
        }
    }

    /// <summary>Loads one scanned model on every device and publishes it ready (or failed, with the reasons).</summary>
    private async Task<ImmutableArray<ModelLoadError>> LoadDefinitionAsync(ModelDefinition definition, bool stillLoading)
    {
        var errors = new List<ModelLoadError>();
        var instances = new Dictionary<string, IInferenceModel>(StringComparer.Ordinal);
        foreach (var device in _devices.Devices)
        {
            var model = await device.RunAsync(() => LoadOn(definition, device, errors));
            if (model is not null)
            {
                instances[device.Name] = model;
            }
        }

        var entry = instances.Count > 0
            ? new ModelEntry(definition.Name, definition.Kind, definition.Version, definition.Options, ModelState.Ready, [.. errors], Leased(instances))
            : new ModelEntry(definition.Name, definition.Kind, definition.Version, definition.Options, ModelState.Failed, [.. errors], FrozenDictionary<string, ModelLease>.Empty);
        Publish(entry, errors, stillLoading);
        if (entry.State == ModelState.Ready)
        {
            LogReady(_logger, entry.Name, entry.Version, string.Join(", ", instances.Keys), instances.Values.First().WarmBatchMs);
        }

        return [.. errors];
    }

    /// <summary>Scans the repository again, as at start: every model it holds now (configured names left out), and every problem.</summary>
    public (List<ModelDefinition> Models, List<ModelLoadError> Errors) ScanRepository()
        => ModelRepositoryScanner.Scan(RepositoryPath, _configured);

    /// <summary>The models this silo serves from the repository (not the configured ones), with their versions.</summary>
    public ImmutableArray<(string Name, string Version)> RepositoryModels
        => [.. _snapshot.Models.Values.Where(m => !_configured.Contains(m.Name)).Select(m => (m.Name, m.Version)).OrderBy(m => m.Name, StringComparer.Ordinal)];

    /// <summary>
    /// Starts serving a model that appeared in the repository since the silo started: scans it, loads and warms it on
    /// every device. Returns its problems (empty when it serves); a model already served is left alone.
    /// </summary>
    public async Task<ImmutableArray<ModelLoadError>> AddAsync(string name)
    {
        if (_snapshot.Models.ContainsKey(name))
        {
            return [];
        }

        var (models, errors) = ScanRepository();
        if (models.FirstOrDefault(m => m.Name == name) is not { } definition)
        {
            var own = errors.Where(e => e.Model == name).ToImmutableArray();
            return own.IsEmpty ? [new ModelLoadError(name, null, null, "the repository holds no such model.")] : own;
        }

        if (definition.Kind == "echo")
        {
            Publish(Echo(definition.Name, definition.Options), [], _snapshot.Loading);
            return [];
        }

        Publish(new ModelEntry(definition.Name, definition.Kind, definition.Version, definition.Options, ModelState.Loading, [], FrozenDictionary<string, ModelLease>.Empty), [], _snapshot.Loading);
        return await LoadDefinitionAsync(definition, _snapshot.Loading);
    }

    /// <summary>
    /// Stops serving a repository model (its folder was removed): new requests get <c>unknown_model</c> at once;
    /// requests in flight finish, then its instances are released. False for a configured model or an unknown name.
    /// </summary>
    public bool Remove(string name)
    {
        if (_configured.Contains(name))
        {
            return false;
        }

        ModelEntry? removed;
        lock (_writeLock)
        {
            if (!_snapshot.Models.TryGetValue(name, out removed))
            {
                return false;
            }

            var models = _snapshot.Models.ToDictionary(StringComparer.Ordinal);
            models.Remove(name);
            _snapshot = _snapshot with { Models = models.ToFrozenDictionary(StringComparer.Ordinal) };
        }

        foreach (var version in PreparedVersions(name))
        {
            Abort(name, version);
        }

        foreach (var lease in removed.Leases.Values)
        {
            lease.Release();
        }

        LogRemoved(_logger, name, removed.Version);
        return true;
    }

    /// <summary>
    /// A rollout's first phase on this silo: loads version <paramref name="version"/> of model <paramref name="name"/>
    /// from the repository beside the serving one, on every device, and warms it up. Nothing serves it until
    /// <see cref="Commit"/>. Returns the problems that stop it (empty when prepared): an unreadable or missing file, a
    /// kind or priority levels that differ, a tensor model whose inputs changed incompatibly, a failed warm-up.
    /// Preparing a version already prepared succeeds at once.
    /// </summary>
    public async Task<ImmutableArray<ModelLoadError>> PrepareAsync(string name, string version, CancellationToken cancellationToken = default)
    {
        ImmutableArray<ModelLoadError> Refuse(string reason) => [new ModelLoadError(name, null, "version", reason)];
        if (!TryGet(name, out var current))
        {
            return Refuse($"no model named '{name}' is served.");
        }

        if (current.Kind is "echo" or "?")
        {
            return Refuse(current.Kind == "echo" ? "an echo model has no versions to roll out." : "the model's config is broken; fix it and reload.");
        }

        if (_prepared.ContainsKey((name, version)))
        {
            return [];
        }

        var (definition, errors) = ModelRepositoryScanner.ScanVersion(RepositoryPath, name, version);
        if (definition is null)
        {
            return [.. errors];
        }

        if (definition.Kind != current.Kind)
        {
            return Refuse($"version {version} is a {definition.Kind} model; version {current.Version} is a {current.Kind} model.");
        }

        if (definition.Options.PriorityLevels != current.Options.PriorityLevels)
        {
            return Refuse($"version {version} has {definition.Options.PriorityLevels} priority levels, the serving version {current.Options.PriorityLevels}: requests queued at one level cannot move to another.");
        }

        var instances = new Dictionary<string, IInferenceModel>(StringComparer.Ordinal);
        foreach (var device in _devices.Devices)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var model = await LoadBesideAsync(definition, device, errors);
            if (model is not null)
            {
                instances[device.Name] = model;
            }
        }

        var incompatible = current.State == ModelState.Ready && instances.Count > 0 && current.Kind == "tensor"
            ? Incompatibility(current.Any!.Inputs, instances.Values.First().Inputs)
            : null;
        if (errors.Count > 0 || instances.Count < _devices.Devices.Count() || incompatible is not null)
        {
            foreach (var (deviceName, model) in instances)
            {
                ReleaseOnDevice(deviceName, model);
            }

            return incompatible is null ? [.. errors] : Refuse($"version {version} changes the inputs incompatibly: {incompatible}");
        }

        var prepared = new ModelEntry(name, definition.Kind, definition.Version, definition.Options, ModelState.Ready, [], Leased(instances));
        if (!_prepared.TryAdd((name, version), prepared))
        {
            foreach (var lease in prepared.Leases.Values)
            {
                lease.Release();
            }
        }

        LogPrepared(_logger, name, version, string.Join(", ", instances.Keys));
        return [];
    }

    /// <summary>
    /// A rollout's second phase on this silo: the prepared version serves from now on (one reference swap). Requests
    /// admitted before keep the version they started on; the old version is released when the last of them ends.
    /// Returns false when the version was not prepared here.
    /// </summary>
    public bool Commit(string name, string version)
    {
        ModelEntry? old = null;
        lock (_writeLock)
        {
            if (!_prepared.TryRemove((name, version), out var prepared))
            {
                return false;
            }

            _snapshot.Models.TryGetValue(name, out old);
            var models = _snapshot.Models.ToDictionary(StringComparer.Ordinal);
            models[name] = prepared;
            _snapshot = _snapshot with { Models = models.ToFrozenDictionary(StringComparer.Ordinal) };
        }

        foreach (var lease in old?.Leases.Values ?? [])
        {
            lease.Release();
        }

        LogCommitted(_logger, name, version, old?.Version ?? "?");
        return true;
    }

    /// <summary>Drops a prepared version that will not serve (a rollout aborted). Unknown versions are ignored.</summary>
    public void Abort(string name, string version)
    {
        if (_prepared.TryRemove((name, version), out var prepared))
        {
            foreach (var lease in prepared.Leases.Values)
            {
                lease.Release();
            }
        }
    }

    /// <summary>Versions of a model prepared on this silo and not yet committed or aborted.</summary>
    public ImmutableArray<string> PreparedVersions(string name)
        => [.. _prepared.Keys.Where(k => k.Model == name).Select(k => k.Version).Order(StringComparer.Ordinal)];

    /// <summary>Why a new version's inputs cannot take the old version's requests (names, types, shapes), or null.</summary>
    private static string? Incompatibility(ImmutableArray<TensorSpec> old, ImmutableArray<TensorSpec> next)
    {
        foreach (var input in old)
        {
            var match = next.FirstOrDefault(n => n.Name == input.Name);
            if (match is null)
            {
                return $"input '{input.Name}' is gone (it has {string.Join(", ", next.Select(n => n.Name))}).";
            }

            if (match.ElementType != input.ElementType || !match.Shape.SequenceEqual(input.Shape))
            {
                return $"input '{input.Name}' was {input.ElementType.ToWire()} [{string.Join(",", input.Shape)}], is {match.ElementType.ToWire()} [{string.Join(",", match.Shape)}].";
            }
        }

        var added = next.FirstOrDefault(n => !old.Any(o => o.Name == n.Name));
        return added is null ? null : $"it needs a new input '{added.Name}' that requests of the serving version do not send.";
    }

    public void Dispose()
    {
        foreach (var entry in _snapshot.Models.Values)
        {
            foreach (var (deviceName, instance) in entry.Instances.DistinctBy(kv => kv.Value))
            {
                // Released on its device's thread, after any batch still running there: a session must not be freed
                // under a run. A device that has already stopped runs nothing, so it is freed here.
                try
                {
                    if (_devices.TryGet(deviceName, out var device)
                        && device.RunAsync(() => { instance.Dispose(); return true; }).Wait(TimeSpan.FromSeconds(10)))
                    {
                        continue;
                    }
                }
                catch (Exception ex) when (ex is AggregateException or ChannelClosedException)
                {
                }

                instance.Dispose();
            }
        }
    }

    private IInferenceModel? LoadOn(ModelDefinition definition, DeviceWorker device, List<ModelLoadError> errors)
    {
        var model = CreateOn(definition, device, errors);
        if (model is null)
        {
            return null;
        }

        foreach (var size in WarmupSizesOf(definition))
        {
            if (WarmUp(model, definition, size) is { } failure)
            {
                errors.Add(new ModelLoadError(definition.Name, definition.OnnxFile, null, $"on {device.Name}: {failure}"));
                model.Dispose();
                return null;
            }
        }

        return model;
    }

    /// <summary>
    /// Loads a version beside a serving one without holding its device: the session is created on a pool thread (graph
    /// optimisation runs nothing on the device), and each warm-up batch size is its own device job, so the serving
    /// version's batches interleave with the warm-up instead of waiting for all of it (bench/rollout.sh).
    /// </summary>
    private async Task<IInferenceModel?> LoadBesideAsync(ModelDefinition definition, DeviceWorker device, List<ModelLoadError> errors)
    {
        var model = await Task.Run(() => CreateOn(definition, device, errors));
        if (model is null)
        {
            return null;
        }

        foreach (var size in WarmupSizesOf(definition))
        {
            if (await device.RunAsync(() => WarmUp(model, definition, size)) is { } failure)
            {
                errors.Add(new ModelLoadError(definition.Name, definition.OnnxFile, null, $"on {device.Name}: {failure}"));
                ReleaseOnDevice(device.Name, model);
                return null;
            }
        }

        return model;
    }

    private IInferenceModel? CreateOn(ModelDefinition definition, DeviceWorker device, List<ModelLoadError> errors)
    {
        using var sessionOptions = _devices.CreateSessionOptions(device);
        return definition.Kind == "decoder"
            ? OnnxDecoderModel.Load(definition, sessionOptions, errors)
            : OnnxTensorModel.Load(definition, sessionOptions, errors);
    }

    private static List<int> WarmupSizesOf(ModelDefinition definition)
        => definition.Config.WarmupBatchSizes is { Count: > 0 } given ? given : WarmupSizes(definition.Options.MaxBatchSize);

    /// <summary>Runs one warm-up batch size; an error message, or null. Device thread only.</summary>
    private static string? WarmUp(IInferenceModel model, ModelDefinition definition, int size) => model switch
    {
        OnnxDecoderModel decoder => decoder.WarmUp([size]),
        OnnxTensorModel tensor => tensor.WarmUp([size], definition.Config.WarmupDims),
        _ => null,
    };

    /// <summary>Powers of two up to the largest batch, and the largest itself.</summary>
    internal static List<int> WarmupSizes(int maxBatchSize)
    {
        var sizes = new List<int>();
        for (var size = 1; size < maxBatchSize; size *= 2)
        {
            sizes.Add(size);
        }

        sizes.Add(maxBatchSize);
        return sizes;
    }

    private void Publish(ModelEntry entry, List<ModelLoadError> errors, bool stillLoading)
    {
        lock (_writeLock)
        {
            var models = _snapshot.Models.ToDictionary(StringComparer.Ordinal);
            models[entry.Name] = entry;
            _snapshot = new Snapshot(models.ToFrozenDictionary(StringComparer.Ordinal), _snapshot.Errors.AddRange(errors), stillLoading);
        }
    }

    private ModelEntry Echo(string name, ModelOptions options)
    {
        var model = new EchoModel(name, options);
        // Echo holds nothing to release; its leases only keep the batcher's bookkeeping uniform.
        return new ModelEntry(name, "echo", options.Version, options, ModelState.Ready, [], _devices.Devices.ToFrozenDictionary(d => d.Name, _ => new ModelLease(model, static _ => { }), StringComparer.Ordinal));
    }

    /// <summary>Leases whose last release frees each instance on its own device's thread, after any batch still there.</summary>
    private FrozenDictionary<string, ModelLease> Leased(Dictionary<string, IInferenceModel> instances)
        => instances.ToFrozenDictionary(kv => kv.Key, kv => new ModelLease(kv.Value, model => ReleaseOnDevice(kv.Key, model)), StringComparer.Ordinal);

    private void ReleaseOnDevice(string deviceName, IInferenceModel model)
    {
        try
        {
            if (_devices.TryGet(deviceName, out var device))
            {
                _ = device.RunAsync(() => { model.Dispose(); return true; });
                return;
            }
        }
        catch (ChannelClosedException)
        {
        }

        model.Dispose();
    }

    private sealed record Snapshot(FrozenDictionary<string, ModelEntry> Models, ImmutableArray<ModelLoadError> Errors, bool Loading);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} version {Version} is ready on {Devices} (a full batch took {BatchMs:F1} ms at warm-up)")]
    private static partial void LogReady(ILogger logger, string model, string version, string devices, double batchMs);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} (version {Version}) left the repository: no longer served; released once its last request ends")]
    private static partial void LogRemoved(ILogger logger, string model, string version);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} version {Version} is prepared on {Devices}")]
    private static partial void LogPrepared(ILogger logger, string model, string version, string devices);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} now serves version {Version} (was {Previous}); the old version is released when its last request ends")]
    private static partial void LogCommitted(ILogger logger, string model, string version, string previous);

    [LoggerMessage(Level = LogLevel.Information, Message = "Wrote the built-in tiny-lm decoder to {Path}")]
    private static partial void LogTinyLmWritten(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Error, Message = "The built-in tiny-lm could not be written into {Path}; it is not served")]
    private static partial void LogTinyLmFailed(ILogger logger, Exception ex, string path);

    [LoggerMessage(Level = LogLevel.Error, Message = "Model repository {Path}: {Count} problems; the models concerned are not served:\n{Errors}")]
    private static partial void LogRepositoryErrors(ILogger logger, string path, int count, string errors);
}
