using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models.Repository;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models;

/// <summary>
/// The key/value-cache memory each device gives the decoder models on it, together (<see cref="DeviceOptions.KvCacheBudgetMb"/>).
/// A decoder's cache (<c>kv_cache_mb</c>) is allocated as sequences arrive, so models whose caches add up past what a
/// device holds would each load and then fail together under load: instead each decoder instance reserves its
/// <c>kv_cache_mb</c> on its device before it loads, and the instances past the budget do not load (models load in the
/// repository's name order, so which ones is stable). A reservation is given back when its instance is released. A new
/// version of a model, loaded beside the one serving for a rollout, is checked as taking that version's place: the two
/// overlap only until the old one drains.
/// </summary>
public sealed class KvCacheBudget
{
    private readonly Dictionary<string, long> _reserved = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Device, string Model), long> _byModel = [];
    private readonly Lock _lock = new();

    public KvCacheBudget(IOptions<DeviceOptions> options, DeviceRegistry devices)
        : this(options.Value.KvCacheBudgetMb, devices.Devices.Count(), GC.GetGCMemoryInfo().TotalAvailableMemoryBytes)
    {
    }

    /// <summary>A budget of <paramref name="configuredMb"/> per device, or (0) the process's memory shared among
    /// <paramref name="deviceCount"/> devices (no bound when <paramref name="availableBytes"/> is unknown).</summary>
    internal KvCacheBudget(long configuredMb, int deviceCount, long availableBytes)
        => PerDeviceMb = configuredMb > 0 ? configuredMb
            : availableBytes > 0 ? Math.Max(1, (availableBytes >> 20) / Math.Max(deviceCount, 1))
            : long.MaxValue;

    /// <summary>MiB of KV cache each device gives its decoder models, together.</summary>
    public long PerDeviceMb { get; }

    /// <summary>MiB reserved on <paramref name="device"/> now.</summary>
    public long ReservedMb(string device)
    {
        lock (_lock)
        {
            return _reserved.GetValueOrDefault(device);
        }
    }

    /// <summary>
    /// Reserves <paramref name="definition"/>'s cache on <paramref name="device"/>. Returns null with the reservation (null
    /// for a model that is not a decoder), or the problem that stops it loading there, naming the budget.
    /// </summary>
    internal ModelLoadError? TryReserve(ModelDefinition definition, string device, out IDisposable? reservation)
    {
        reservation = null;
        if (definition.Kind != ModelKind.Decoder)
        {
            return null;
        }

        long megabytes = definition.Config.KvCacheMb ?? MemoryChecks.DefaultKvCacheMb;
        lock (_lock)
        {
            var reserved = _reserved.GetValueOrDefault(device);
            var own = _byModel.GetValueOrDefault((device, definition.Name));
            if (reserved - own + megabytes > PerDeviceMb)
            {
                return new ModelLoadError(
                    definition.Name,
                    $"{definition.Name}/{ModelRepositoryScanner.ConfigFile}",
                    "kv_cache_mb",
                    $"{megabytes} MiB on {device} would take the decoder models' KV caches there to {reserved - own + megabytes} MiB, past the device's budget of {PerDeviceMb} MiB ({DeviceOptions.Section}:KvCacheBudgetMb); the models loaded before it keep theirs.");
            }

            _reserved[device] = reserved + megabytes;
            _byModel[(device, definition.Name)] = own + megabytes;
        }

        reservation = new Reservation(this, device, definition.Name, megabytes);
        return null;
    }

    private void GiveBack(string device, string model, long megabytes)
    {
        lock (_lock)
        {
            _reserved[device] -= megabytes;
            var own = _byModel[(device, model)] - megabytes;
            if (own == 0)
            {
                _byModel.Remove((device, model));
            }
            else
            {
                _byModel[(device, model)] = own;
            }
        }
    }

    private sealed class Reservation(KvCacheBudget budget, string device, string model, long megabytes) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                budget.GiveBack(device, model, megabytes);
            }
        }
    }
}
