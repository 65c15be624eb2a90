using System.Collections.Frozen;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models;

/// <summary>A served model: its batching options and the loaded version.</summary>
public sealed record ModelEntry(string Name, ModelOptions Options, IInferenceModel Model);

/// <summary>The models this silo serves, built once from <see cref="ModelsOptions"/>; the built-in <c>echo</c> is always present.</summary>
public sealed class ModelCatalog
{
    public const string BuiltInEcho = "echo";

    private readonly FrozenDictionary<string, ModelEntry> _models;

    public ModelCatalog(IOptions<ModelsOptions> options)
    {
        var configured = new Dictionary<string, ModelOptions>(options.Value.Models, StringComparer.Ordinal);
        configured.TryAdd(BuiltInEcho, new ModelOptions());
        _models = configured.ToFrozenDictionary(
            kv => kv.Key,
            kv => new ModelEntry(kv.Key, kv.Value, new EchoModel(kv.Key, kv.Value)),
            StringComparer.Ordinal);
    }

    public IEnumerable<string> Names => _models.Keys;

    public bool TryGet(string name, out ModelEntry entry) => _models.TryGetValue(name, out entry!);
}
