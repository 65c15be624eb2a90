using System.Net;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Options;

namespace StreamInfer.Frontend.Auth;

/// <summary>
/// Who may use the serving endpoints, and as whom. Section <c>StreamInfer:Auth</c>. With <see cref="Keys"/> empty (the
/// default) the grid is open as before; with keys, every inference and model-metadata endpoint needs one.
/// </summary>
public sealed partial class AuthOptions
{
    public const string Section = "StreamInfer:Auth";

    /// <summary>The API keys, each stored as its SHA-256 hash and naming a client identity with its limits. At most 10000.</summary>
    public List<ApiKeyOptions> Keys { get; set; } = [];

    /// <summary>
    /// Addresses (<c>10.0.0.7</c>) and networks (<c>10.0.0.0/8</c>) of the proxies in front of the frontend. Only from
    /// them is <c>X-Forwarded-For</c> read (the caller's address is then the forwarded one) and, without keys,
    /// <c>X-Client-Id</c> honoured. Empty (the default): neither header is read from anyone. At most 256 entries.
    /// </summary>
    public List<string> TrustedProxies { get; set; } = [];

    /// <summary>
    /// The highest priority level a request may carry when no key names its client (a key's own
    /// <see cref="ApiKeyOptions.MaxPriority"/> applies otherwise); higher ones are lowered to it. Null (the default): no
    /// ceiling beyond the model's levels. Range: [0, 15].
    /// </summary>
    public int? MaxPriority { get; set; }

    /// <summary>
    /// A Redis hash holding more keys, for a cluster whose frontends share them: each field a key's hash, each value the
    /// JSON of an <see cref="ApiKeyOptions"/> without its hash (<c>{"Identity": "web", "RatePerSecond": 50}</c>). Re-read
    /// every <see cref="RedisRefresh"/>; an entry that fails the checks is logged and left out. Empty (the default): none.
    /// Set, keys are required even while the hash is empty.
    /// </summary>
    public string? RedisHash { get; set; }

    /// <summary>The Redis connection string for <see cref="RedisHash"/> (StackExchange.Redis syntax). Empty: the cluster's, <c>StreamInfer:Orleans:Redis</c>.</summary>
    public string? Redis { get; set; }

    /// <summary>How often <see cref="RedisHash"/> is re-read: a key added or removed there takes effect within it. Range: [1 s, 1 h]. Default 10 s.</summary>
    public TimeSpan RedisRefresh { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Whether keys are required.</summary>
    public bool KeysRequired => Keys.Count > 0 || !string.IsNullOrEmpty(RedisHash);

    [GeneratedRegex("^[0-9a-fA-F]{64}$")]
    internal static partial Regex HashPattern();

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    internal static partial Regex IdentityPattern();
}

/// <summary>
/// One API key: its hash, the client identity it names (the session the grid keeps for that client; keys of one
/// identity share it) and that client's limits. Unset limits take <c>StreamInfer:Session</c>'s.
/// </summary>
public sealed class ApiKeyOptions
{
    /// <summary>
    /// The key's SHA-256 hash, 64 hex digits, of the key's UTF-8 bytes (<c>printf %s "$KEY" | sha256sum</c>, or
    /// <c>dotnet run --project Frontend -- --hash-key</c> reading the key on standard input). Never the key itself.
    /// </summary>
    public string Hash { get; set; } = string.Empty;

    /// <summary>The client's name: letters, digits, <c>.</c>, <c>_</c> and <c>-</c>, 1 to 64 of them. Its session is <c>key-</c> + it.</summary>
    public string Identity { get; set; } = string.Empty;

    /// <summary>Token-bucket refill rate, requests per second, shared by all the client's connections and calls. Range: (0, 1e6].</summary>
    public double? RatePerSecond { get; set; }

    /// <summary>Token-bucket capacity. Range: [1, 1e6].</summary>
    public double? Burst { get; set; }

    /// <summary>Most unfinished requests the client may have, over all its connections and calls. Range: [1, 100000].</summary>
    public int? BacklogCapacity { get; set; }

    /// <summary>The highest priority level the client's requests may carry; higher ones are lowered to it. Range: [0, 15]. Null: none.</summary>
    public int? MaxPriority { get; set; }

    /// <summary>The models the client may use; empty (the default): all. Others are answered as if they did not exist.</summary>
    public List<string> Models { get; set; } = [];

    /// <summary>WebSocket connections and gRPC streams the client may hold at once on one frontend. Range: [1, 1000000]. Null: no cap of its own.</summary>
    public int? MaxConnections { get; set; }
}

/// <summary>Checks <see cref="AuthOptions"/>, all errors at once.</summary>
public sealed class AuthOptionsValidator : IValidateOptions<AuthOptions>
{
    public ValidateOptionsResult Validate(string? name, AuthOptions o)
    {
        var errors = new List<string>();
        if (o.Keys.Count > 10_000)
        {
            errors.Add($"{AuthOptions.Section}:Keys may hold at most 10000 keys; got {o.Keys.Count}.");
        }

        var hashes = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var identities = new Dictionary<string, (int Index, string Limits)>(StringComparer.Ordinal);
        for (var i = 0; i < o.Keys.Count; i++)
        {
            var key = o.Keys[i];
            var at = $"{AuthOptions.Section}:Keys:{i}";
            if (key.Hash is null || !AuthOptions.HashPattern().IsMatch(key.Hash))
            {
                errors.Add($"{at}:Hash must be a SHA-256 hash, 64 hex digits (never the key itself).");
            }
            else if (!hashes.Add(key.Hash))
            {
                errors.Add($"{at}:Hash is the hash of an earlier key.");
            }

            if (key.Identity is null || !AuthOptions.IdentityPattern().IsMatch(key.Identity))
            {
                errors.Add($"{at}:Identity must be 1 to 64 of A-Z a-z 0-9 . _ -; got '{key.Identity}'.");
                continue;
            }

            CheckLimits(key, at, errors);

            // Keys of one identity (a key and its replacement, during a rotation) share its session, so its limits.
            var limits = $"{ApiKeyRing.Limits(key, null)} {key.MaxConnections} {string.Join(",", key.Models.Order(StringComparer.Ordinal))}";
            if (!identities.TryAdd(key.Identity, (i, limits)) && identities[key.Identity] is var first && first.Limits != limits)
            {
                errors.Add($"{at} names identity '{key.Identity}' as Keys:{first.Index} does, with other limits: keys of one identity share its session and must carry the same limits.");
            }
        }

        if (o.TrustedProxies.Count > 256)
        {
            errors.Add($"{AuthOptions.Section}:TrustedProxies may hold at most 256 entries; got {o.TrustedProxies.Count}.");
        }

        foreach (var proxy in o.TrustedProxies)
        {
            if (!IPAddress.TryParse(proxy, out _) && !IPNetwork.TryParse(proxy, out _))
            {
                errors.Add($"{AuthOptions.Section}:TrustedProxies entry '{proxy}' is neither an IP address nor a network (address/prefix).");
            }
        }

        if (o.RedisRefresh < TimeSpan.FromSeconds(1) || o.RedisRefresh > TimeSpan.FromHours(1))
        {
            errors.Add($"{AuthOptions.Section}:RedisRefresh must be in [1 s, 1 h]; got {o.RedisRefresh}.");
        }

        ClientLimitRanges.CheckPriority($"{AuthOptions.Section}:MaxPriority", o.MaxPriority, errors);

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void CheckLimits(ApiKeyOptions key, string at, List<string> errors)
    {
        ClientLimitRanges.Check(at, key.RatePerSecond, key.Burst, key.BacklogCapacity, errors);
        ClientLimitRanges.CheckPriority($"{at}:MaxPriority", key.MaxPriority, errors);

        if (key.MaxConnections is < 1 or > 1_000_000)
        {
            errors.Add($"{at}:MaxConnections must be in [1, 1000000]; got {key.MaxConnections}.");
        }

        if (key.Models.Count > 1000 || key.Models.Any(string.IsNullOrWhiteSpace))
        {
            errors.Add($"{at}:Models must be at most 1000 non-empty model names.");
        }
    }
}
