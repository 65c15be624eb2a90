using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;

namespace StreamInfer.Frontend.Auth;

/// <summary>
/// The configured API keys, by hash: a presented key is hashed and looked up, so the configuration never holds a key
/// that would let its reader act as the client.
/// </summary>
internal sealed class ApiKeyRing
{
    private readonly FrozenDictionary<string, ClientIdentity> _byHash;
    private readonly ClientLimits? _anonymousLimits;
    private readonly int? _ceiling;
    private volatile FrozenDictionary<string, ClientIdentity> _stored = FrozenDictionary<string, ClientIdentity>.Empty;

    public ApiKeyRing(IOptions<AuthOptions> options)
    {
        var o = options.Value;
        _ceiling = o.MaxPriority;
        _byHash = ByHash(o.Keys);
        _anonymousLimits = o.MaxPriority is { } ceiling ? new ClientLimits(MaxPriority: ceiling) : null;
        KeysRequired = o.KeysRequired;
    }

    /// <summary>Whether serving endpoints need a key.</summary>
    public bool KeysRequired { get; }

    /// <summary>The SHA-256 hash of <paramref name="key"/>'s UTF-8 bytes, as lowercase hex: what <see cref="ApiKeyOptions.Hash"/> holds.</summary>
    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>The client <paramref name="key"/> names, or false for a key not configured.</summary>
    public bool TryFind(string key, out ClientIdentity client)
    {
        var hash = Hash(key);
        return _byHash.TryGetValue(hash, out client!) || _stored.TryGetValue(hash, out client!);
    }

    /// <summary>Replaces the keys read from Redis (the configured ones stay, and win on a shared hash).</summary>
    public void ReplaceStored(IEnumerable<ApiKeyOptions> keys) => _stored = ByHash(keys);

    /// <summary>An anonymous caller (no keys configured), named by its address or a trusted proxy's client id.</summary>
    public ClientIdentity Anonymous(string name) => new(name, Keyed: false, _anonymousLimits, null, null);

    private FrozenDictionary<string, ClientIdentity> ByHash(IEnumerable<ApiKeyOptions> keys)
    {
        var byHash = new Dictionary<string, ClientIdentity>(StringComparer.Ordinal);
        foreach (var k in keys)
        {
            byHash.TryAdd(k.Hash.ToLowerInvariant(), new ClientIdentity(k.Identity, Keyed: true, Limits(k, _ceiling), k.Models.Count == 0 ? null : k.Models.ToFrozenSet(StringComparer.Ordinal), k.MaxConnections));
        }

        return byHash.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>The limits a key gives its client; the key's own priority ceiling, else <paramref name="defaultCeiling"/>.
    /// Null when the key sets none (the session's defaults apply).</summary>
    internal static ClientLimits? Limits(ApiKeyOptions key, int? defaultCeiling)
    {
        var limits = new ClientLimits(key.RatePerSecond, key.Burst, key.BacklogCapacity, key.MaxPriority ?? defaultCeiling);
        return limits == new ClientLimits() ? null : limits;
    }
}
