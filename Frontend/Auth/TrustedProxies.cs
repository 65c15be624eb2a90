using System.Net;
using IPNetwork = System.Net.IPNetwork;
using Microsoft.Extensions.Options;

namespace StreamInfer.Frontend.Auth;

/// <summary>
/// The proxies whose word is taken about the caller: <c>X-Forwarded-For</c> from them gives the caller's address, and
/// (without keys) their <c>X-Client-Id</c> names the client. Anyone else's headers are ignored: a client could name itself
/// as any other and spend that client's rate and backlog.
/// </summary>
internal sealed class TrustedProxies
{
    /// <summary>The longest client id taken from <c>X-Client-Id</c>.</summary>
    public const int MaxClientIdLength = 128;

    private readonly IPAddress[] _addresses;
    private readonly IPNetwork[] _networks;

    public TrustedProxies(IOptions<AuthOptions> options)
    {
        var entries = options.Value.TrustedProxies;
        _addresses = [.. entries.Select(e => IPAddress.TryParse(e, out var a) ? a : null).OfType<IPAddress>().Select(Canonical)];
        _networks = [.. entries.Where(e => !IPAddress.TryParse(e, out _)).Select(e => IPNetwork.Parse(e))];
    }

    /// <summary>Whether any proxy is trusted.</summary>
    public bool Any => _addresses.Length + _networks.Length > 0;

    /// <summary>Whether <paramref name="peer"/> is a trusted proxy.</summary>
    public bool Trusts(IPAddress? peer)
    {
        if (peer is null)
        {
            return false;
        }

        peer = Canonical(peer);
        return _addresses.Contains(peer) || _networks.Any(n => n.Contains(peer));
    }

    /// <summary>ASP.NET Core's forwarded-headers handling, trusting exactly these proxies (not its loopback default).</summary>
    public ForwardedHeadersOptions ForwardingOptions()
    {
        var options = new ForwardedHeadersOptions { ForwardedHeaders = Microsoft.AspNetCore.HttpOverrides.ForwardedHeaders.XForwardedFor | Microsoft.AspNetCore.HttpOverrides.ForwardedHeaders.XForwardedProto };
        options.KnownProxies.Clear();
        options.KnownIPNetworks.Clear();
        foreach (var address in _addresses)
        {
            options.KnownProxies.Add(address);
        }

        foreach (var network in _networks)
        {
            options.KnownIPNetworks.Add(network);
        }

        return options;
    }

    /// <summary>The caller's name without a key: a trusted proxy's <c>X-Client-Id</c>, or else its address.</summary>
    public string CallerName(HttpContext context)
    {
        var peer = context.Features.Get<PeerAddress>()?.Address ?? context.Connection.RemoteIpAddress;
        if (Trusts(peer) && context.Request.Headers["X-Client-Id"].FirstOrDefault() is { Length: > 0 and <= MaxClientIdLength } id)
        {
            return id;
        }

        return context.Connection.RemoteIpAddress is { } address ? Canonical(address).ToString() : "unknown";
    }

    private static IPAddress Canonical(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
}

/// <summary>The address the connection came from, kept before forwarded headers replace the caller's address.</summary>
internal sealed record PeerAddress(IPAddress? Address);
