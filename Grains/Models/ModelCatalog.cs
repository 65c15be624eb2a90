using System.Collections.Frozen;
using System.Collections.Immutable;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models;

/// <summary>
/// The models this silo serves, by name: the built-in <c>echo</c>, those configured under <c>StreamInfer:Models</c>,
/// and the model repository's (registered by <see cref="RepositorySync"/>, loaded by <see cref="ModelLoader"/>, swapped
/// by <see cref="ModelRollout"/>). The catalog is an immutable snapshot swapped whole behind one reference, so readers
/// never lock; writers take one lock among themselves.
/// </summary>
public sealed class ModelCatalog : IDisposable
{
    /// <summary>The model every silo serves unless configuration replaces it.</summary>
    public const string BuiltInEcho = "echo";

    private readonly DeviceRegistry _devices;
    private readonly FrozenSet<string> _configured;
    private readonly TaskCompletionSource _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object _writeLock = new();
    private volatile Snapshot _snapshot;
    private int _roundRobin;

    public ModelCatalog(IOptions<ModelsOptions> options, DeviceRegistry devices)
    {
        _devices = devices;
        var configured = new Dictionary<string, ModelOptions>(options.Value.Models, StringComparer.Ordinal);
        configured.TryAdd(BuiltInEcho, new ModelOptions());
        _configured = configured.Keys.ToFrozenSet(StringComparer.Ordinal);
        var deviceNames = devices.Devices.Select(d => d.Name).ToList();
        _snapshot = new Snapshot(
            configured.ToFrozenDictionary(kv => kv.Key, kv => ModelEntry.Echo(kv.Key, kv.Value, deviceNames), StringComparer.Ordinal),
            [],
            Loading: true);
    }

    /// <summary>Completes when every repository model has loaded or failed.</summary>
    public Task Loaded => _loaded.Task;

    public IEnumerable<string> Names => _snapshot.Models.Keys;

    /// <summary>The names configured under <c>StreamInfer:Models</c> (and <c>echo</c>): a repository model may not take one.</summary>
    public IReadOnlySet<string> Configured => _configured;

    /// <summary>Every model and every problem the repository scan and load found.</summary>
    public RepositoryStatus Status
    {
        get
        {
            var s = _snapshot;
            return new RepositoryStatus([.. s.Models.Values.OrderBy(m => m.Name, StringComparer.Ordinal).Select(m => m.ToInfo())], s.Errors, s.Loading);
        }
    }

    /// <summary>The models this silo serves from the repository (not the configured ones), with their versions.</summary>
    public ImmutableArray<(string Name, string Version)> RepositoryModels
        => [.. _snapshot.Models.Values.Where(m => !_configured.Contains(m.Name)).Select(m => (m.Name, m.Version)).OrderBy(m => m.Name, StringComparer.Ordinal)];

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

    /// <summary>Registers <paramref name="entry"/> under its name, replacing any entry there, and records <paramref name="errors"/>.</summary>
    /// <returns>The entry it replaced, or null.</returns>
    internal ModelEntry? Publish(ModelEntry entry, IEnumerable<ModelLoadError> errors)
    {
        lock (_writeLock)
        {
            var s = _snapshot;
            s.Models.TryGetValue(entry.Name, out var old);
            var models = s.Models.ToDictionary(StringComparer.Ordinal);
            models[entry.Name] = entry;
            _snapshot = s with { Models = models.ToFrozenDictionary(StringComparer.Ordinal), Errors = s.Errors.AddRange(errors) };
            return old;
        }
    }

    /// <summary>
    /// Publishes a model that has finished loading, but only in place of its <see cref="ModelState.Loading"/>
    /// placeholder: if the name was removed meanwhile, or something else (a committed rollout) took its place, nothing
    /// changes and the caller releases <paramref name="entry"/>.
    /// </summary>
    internal bool TryPublishLoaded(ModelEntry entry)
    {
        lock (_writeLock)
        {
            if (!_snapshot.Models.TryGetValue(entry.Name, out var current) || current.State != ModelState.Loading)
            {
                return false;
            }

            Publish(entry, entry.Errors);
            return true;
        }
    }

    /// <summary>Records problems that belong to no one entry's load (a name already configured, a broken config).</summary>
    internal void Report(IEnumerable<ModelLoadError> errors)
    {
        lock (_writeLock)
        {
            _snapshot = _snapshot with { Errors = _snapshot.Errors.AddRange(errors) };
        }
    }

    /// <summary>Unregisters a model; new requests get <c>unknown_model</c> from now on.</summary>
    internal bool TryRemove(string name, out ModelEntry removed)
    {
        lock (_writeLock)
        {
            var s = _snapshot;
            if (!s.Models.TryGetValue(name, out removed!))
            {
                return false;
            }

            var models = s.Models.ToDictionary(StringComparer.Ordinal);
            models.Remove(name);
            _snapshot = s with { Models = models.ToFrozenDictionary(StringComparer.Ordinal) };
            return true;
        }
    }

    /// <summary>Marks the repository's first load done (see <see cref="Loaded"/>); returns every problem it found.</summary>
    internal ImmutableArray<ModelLoadError> FinishLoading()
    {
        lock (_writeLock)
        {
            _snapshot = _snapshot with { Loading = false };
        }

        _loaded.TrySetResult();
        return _snapshot.Errors;
    }

    public void Dispose()
    {
        foreach (var entry in _snapshot.Models.Values)
        {
            foreach (var (deviceName, instance) in entry.Instances.DistinctBy(kv => kv.Value))
            {
                _devices.DisposeOnAndWait(deviceName, instance, TimeSpan.FromSeconds(10));
            }
        }
    }

    private sealed record Snapshot(FrozenDictionary<string, ModelEntry> Models, ImmutableArray<ModelLoadError> Errors, bool Loading);
}
