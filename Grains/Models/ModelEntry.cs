using System.Collections.Frozen;
using System.Collections.Immutable;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models;

/// <summary>
/// A model as this silo serves it: its options, its state, and its loaded instance on each device, leased (see
/// <see cref="ModelLease"/>) so that a version that stops serving is released only once its last request has ended.
/// </summary>
public sealed record ModelEntry(
    string Name,
    ModelKind Kind,
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
        Kind.ToWire(),
        Version,
        State,
        Errors,
        Any?.Inputs ?? [],
        Any?.Outputs ?? [],
        Options.MaxBatchSize,
        [.. Instances.Keys.Order(StringComparer.Ordinal)],
        Options.MaxRequestBytes,
        Options.Sequence is not null,
        Options.Sequence?.IdleTimeout.TotalMilliseconds);

    /// <summary>An echo model on every device. Echo holds nothing to release; its leases only keep the batcher's bookkeeping uniform.</summary>
    public static ModelEntry Echo(string name, ModelOptions options, IEnumerable<string> devices)
    {
        var model = new EchoModel(name, options);
        return new ModelEntry(name, ModelKind.Echo, options.Version, options, ModelState.Ready, [], devices.ToFrozenDictionary(d => d, _ => new ModelLease(model, static _ => { }), StringComparer.Ordinal));
    }

    /// <summary>A model that is listed but serves nothing (yet): loading, or failed with its reasons.</summary>
    public static ModelEntry Unloaded(string name, ModelKind kind, string version, ModelOptions options, ModelState state, ImmutableArray<ModelLoadError> errors)
        => new(name, kind, version, options, state, errors, FrozenDictionary<string, ModelLease>.Empty);

    /// <summary>Drops the hold taken when the entry was loaded: each instance goes once its last request has ended.</summary>
    internal void Release()
    {
        foreach (var lease in Leases.Values)
        {
            lease.Release();
        }
    }
}
