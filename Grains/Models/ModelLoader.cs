using System.Collections.Frozen;
using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.Grains.Models;

/// <summary>
/// Turns a scanned model into instances on every device, each warmed up (see <see cref="WarmupPolicy"/>) and leased so
/// that its last release frees it on its own device's thread. It registers nothing: that is the caller's step.
/// </summary>
public sealed partial class ModelLoader(DeviceRegistry devices, KvCacheBudget kvCache, ILogger<ModelLoader> logger)
{
    /// <summary>An echo model from the repository, on every device: nothing to load or warm.</summary>
    public ModelEntry Echo(ModelDefinition definition) => ModelEntry.Echo(definition.Name, definition.Options, devices.Devices.Select(d => d.Name));

    /// <summary>
    /// Loads and warms <paramref name="definition"/> on each device in turn, on the device's own thread (at start-up,
    /// or for a model new to the repository, nothing of it serves yet). Returns it ready on the devices where it
    /// loaded, or failed where it loaded nowhere, with every problem.
    /// </summary>
    public async Task<ModelEntry> LoadAsync(ModelDefinition definition)
    {
        var errors = new List<ModelLoadError>();
        var instances = new Dictionary<string, Loaded>(StringComparer.Ordinal);
        if (MemoryChecks.Check(definition, devices.Devices.Count()) is { } tooLarge)
        {
            errors.Add(tooLarge);
        }
        else
        {
            foreach (var device in devices.Devices)
            {
                if (kvCache.TryReserve(definition, device.Name, out var reservation) is { } overBudget)
                {
                    errors.Add(overBudget);
                    continue;
                }

                IInferenceModel? model = null;
                try
                {
                    model = await device.RunAsync(() => LoadOn(definition, device, errors));
                }
                catch (Exception ex)
                {
                    // Whatever a model throws while it loads is its own failure: the models after it still load.
                    errors.Add(Threw(definition, device, ex));
                }

                Keep(instances, device, model, reservation);
            }
        }

        if (instances.Count == 0)
        {
            LogLoadFailed(logger, definition.Name, definition.Version, ForLog(errors));
            return ModelEntry.Unloaded(definition.Name, definition.Kind, definition.Version, definition.Options, ModelState.Failed, [.. errors]);
        }

        LogReady(logger, definition.Name, definition.Version, string.Join(", ", instances.Keys), instances.Values.First().Model.WarmBatchMs);
        return Ready(definition, instances, [.. errors]);
    }

    /// <summary>
    /// Loads a version beside a serving one without holding its devices: the session is created on a pool thread (graph
    /// optimisation runs nothing on the device), and each warm-up batch size is its own device job, so the serving
    /// version's batches interleave with the warm-up instead of waiting for all of it. Returns the version ready on
    /// every device, or null with the problems (what did load is released).
    /// </summary>
    public async Task<(ModelEntry? Entry, ImmutableArray<ModelLoadError> Errors)> LoadBesideAsync(ModelDefinition definition, CancellationToken cancellationToken)
    {
        var errors = new List<ModelLoadError>();
        var instances = new Dictionary<string, Loaded>(StringComparer.Ordinal);
        if (MemoryChecks.Check(definition, devices.Devices.Count()) is { } tooLarge)
        {
            return (null, [tooLarge]);
        }

        try
        {
            foreach (var device in devices.Devices)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (kvCache.TryReserve(definition, device.Name, out var reservation) is { } overBudget)
                {
                    errors.Add(overBudget);
                    continue;
                }

                IInferenceModel? model = null;
                try
                {
                    model = await LoadBesideAsync(definition, device, errors, cancellationToken);
                }
                finally
                {
                    Keep(instances, device, model, reservation);
                }
            }
        }
        catch (OperationCanceledException)
        {
            Release(instances);
            throw;
        }

        if (errors.Count > 0 || instances.Count < devices.Devices.Count())
        {
            Release(instances);
            LogLoadFailed(logger, definition.Name, definition.Version, ForLog(errors));
            return (null, [.. errors]);
        }

        return (Ready(definition, instances, []), []);
    }

    private async Task<IInferenceModel?> LoadBesideAsync(ModelDefinition definition, DeviceWorker device, List<ModelLoadError> errors, CancellationToken cancellationToken)
    {
        IInferenceModel? model = null;
        try
        {
            model = await Task.Run(() => Create(definition, device, errors), CancellationToken.None);
            if (model is null)
            {
                return null;
            }

            var created = model;
            foreach (var size in WarmupPolicy.SizesFor(definition))
            {
                // An abort stops a prepare between warm-up runs, not only between devices.
                cancellationToken.ThrowIfCancellationRequested();
                if (await device.RunAsync(() => created.WarmUp(size)) is { } failure)
                {
                    errors.Add(WarmUpFailed(definition, device, failure));
                    devices.DisposeOn(device.Name, model);
                    return null;
                }
            }

            return model;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            errors.Add(Threw(definition, device, ex));
            if (model is not null)
            {
                devices.DisposeOn(device.Name, model);
            }

            return null;
        }
        catch (OperationCanceledException)
        {
            if (model is not null)
            {
                devices.DisposeOn(device.Name, model);
            }

            throw;
        }
    }

    private IInferenceModel? LoadOn(ModelDefinition definition, DeviceWorker device, List<ModelLoadError> errors)
    {
        var model = Create(definition, device, errors);
        if (model is null)
        {
            return null;
        }

        try
        {
            foreach (var size in WarmupPolicy.SizesFor(definition))
            {
                if (model.WarmUp(size) is { } failure)
                {
                    errors.Add(WarmUpFailed(definition, device, failure));
                    model.Dispose();
                    return null;
                }
            }
        }
        catch
        {
            model.Dispose();
            throw;
        }

        return model;
    }

    private IInferenceModel? Create(ModelDefinition definition, DeviceWorker device, List<ModelLoadError> errors)
    {
        using var sessionOptions = devices.CreateSessionOptions(device);
        return definition.Kind switch
        {
            ModelKind.Decoder => OnnxDecoderModel.Load(definition, sessionOptions, errors),
            ModelKind.Tensor => OnnxTensorModel.Load(definition, sessionOptions, errors, logger),
            _ => throw new ArgumentException($"a {definition.Kind.ToWire()} model has no ONNX file to load.", nameof(definition)),
        };
    }

    private static ModelLoadError WarmUpFailed(ModelDefinition definition, DeviceWorker device, string failure)
        => new(definition.Name, definition.OnnxFile, null, $"on {device.Name}: {failure}");

    /// <summary>An exception out of a load or warm-up: its type goes into the reason, its text only to the log.</summary>
    private static ModelLoadError Threw(ModelDefinition definition, DeviceWorker device, Exception ex)
        => new(definition.Name, definition.OnnxFile, null, $"on {device.Name}: loading or warming up failed ({OnnxErrors.Code(ex)}).") { Detail = ex.ToString() };

    private static string ForLog(List<ModelLoadError> errors)
        => string.Join("; ", errors.Select(e => e.Detail is null ? e.ToString() : $"{e} [{e.Detail}]"));

    /// <summary>Keeps a device's instance with its KV-cache reservation, or gives the reservation back when nothing loaded.</summary>
    private static void Keep(Dictionary<string, Loaded> instances, DeviceWorker device, IInferenceModel? model, IDisposable? reservation)
    {
        if (model is null)
        {
            reservation?.Dispose();
            return;
        }

        instances[device.Name] = new Loaded(model, reservation);
    }

    /// <summary>Leases whose last release frees each instance on its own device's thread, after any batch still there,
    /// and gives back its KV-cache reservation.</summary>
    private ModelEntry Ready(ModelDefinition definition, Dictionary<string, Loaded> instances, ImmutableArray<ModelLoadError> errors)
        => new(
            definition.Name,
            definition.Kind,
            definition.Version,
            definition.Options,
            ModelState.Ready,
            errors,
            instances.ToFrozenDictionary(kv => kv.Key, kv => new ModelLease(kv.Value.Model, _ => Release(kv.Key, kv.Value)), StringComparer.Ordinal));

    private void Release(Dictionary<string, Loaded> instances)
    {
        foreach (var (deviceName, loaded) in instances)
        {
            Release(deviceName, loaded);
        }
    }

    private void Release(string deviceName, Loaded loaded)
    {
        devices.DisposeOn(deviceName, loaded.Model);
        loaded.KvCache?.Dispose();
    }

    /// <summary>An instance loaded on a device, and the KV cache it reserved there (null for a model that is not a decoder).</summary>
    private sealed record Loaded(IInferenceModel Model, IDisposable? KvCache);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Model {Model} version {Version} did not load: {Errors}")]
    private static partial void LogLoadFailed(ILogger logger, string model, string version, string errors);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model} version {Version} is ready on {Devices} (a full batch took {BatchMs:F1} ms at warm-up)")]
    private static partial void LogReady(ILogger logger, string model, string version, string devices, double batchMs);
}
