using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.Grains.Models;

/// <summary>
/// Bounds a model's memory settings by the memory the process may use, before anything loads: a decoder's key/value
/// cache (<c>kv_cache_mb</c>, per device) is allocated as sequences arrive, so a budget the machine cannot hold would
/// otherwise fail only under load.
/// </summary>
internal static class MemoryChecks
{
    /// <summary>A decoder's <c>kv_cache_mb</c> when its config sets none.</summary>
    public const int DefaultKvCacheMb = 1024;

    /// <summary>The problem that stops <paramref name="definition"/> loading on <paramref name="deviceCount"/> devices, or null.</summary>
    public static ModelLoadError? Check(ModelDefinition definition, int deviceCount)
        => Check(definition, deviceCount, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);

    /// <summary>As <see cref="Check(ModelDefinition, int)"/> against <paramref name="availableBytes"/> (0: unknown, no check).</summary>
    internal static ModelLoadError? Check(ModelDefinition definition, int deviceCount, long availableBytes)
    {
        if (definition.Kind != ModelKind.Decoder || availableBytes <= 0)
        {
            return null;
        }

        var megabytes = definition.Config.KvCacheMb ?? DefaultKvCacheMb;
        var total = (long)megabytes * Math.Max(deviceCount, 1) << 20;
        return total > availableBytes
            ? new ModelLoadError(
                definition.Name,
                $"{definition.Name}/{ModelRepositoryScanner.ConfigFile}",
                "kv_cache_mb",
                $"{megabytes} MiB on each of {Math.Max(deviceCount, 1)} devices is more than the {availableBytes >> 20} MiB of memory the process may use.")
            : null;
    }
}
