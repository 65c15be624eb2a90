using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;

namespace StreamInfer.Frontend.Hosting;

/// <summary>
/// The long-lived connections (WebSockets, gRPC streams) each remote address holds on this frontend, against
/// <see cref="FrontendOptions.MaxConnectionsPerAddress"/> (<see cref="FrontendOptions.MaxConnectionsPerLoopback"/> for a
/// loopback address). An IPv4-mapped IPv6 address counts as its IPv4 address, and any other IPv6 address by its /64:
/// one host is usually given a whole /64 and could otherwise take a fresh address per connection. The address is the
/// one ASP.NET Core reports (a trusted proxy's forwarded address, where forwarded headers are configured).
/// </summary>
internal sealed class ConnectionsPerAddress(IOptions<FrontendOptions> options)
{
    private readonly Dictionary<IPAddress, int> _held = [];

    /// <summary>The cap that applies to <paramref name="address"/>.</summary>
    public int LimitFor(IPAddress address) => IPAddress.IsLoopback(address) ? options.Value.MaxConnectionsPerLoopback : options.Value.MaxConnectionsPerAddress;

    /// <summary>Takes a connection of <paramref name="address"/>; false when it holds its cap. Without an address (not a
    /// TCP connection) there is nothing to count: true, and <paramref name="key"/> null.</summary>
    public bool TryTake(IPAddress? address, out IPAddress? key)
    {
        key = address is null ? null : KeyOf(address);
        if (key is null)
        {
            return true;
        }

        var limit = LimitFor(key);
        lock (_held)
        {
            var held = _held.GetValueOrDefault(key);
            if (held >= limit)
            {
                return false;
            }

            _held[key] = held + 1;
            return true;
        }
    }

    /// <summary>Gives back a connection taken with <see cref="TryTake"/> under <paramref name="key"/>.</summary>
    public void Release(IPAddress? key)
    {
        if (key is null)
        {
            return;
        }

        lock (_held)
        {
            if (_held.GetValueOrDefault(key) <= 1)
            {
                _held.Remove(key);
            }
            else
            {
                _held[key]--;
            }
        }
    }

    /// <summary>Connections <paramref name="address"/> holds now.</summary>
    public int Held(IPAddress address)
    {
        lock (_held)
        {
            return _held.GetValueOrDefault(KeyOf(address));
        }
    }

    private static IPAddress KeyOf(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            return address.MapToIPv4();
        }

        if (address.AddressFamily != AddressFamily.InterNetworkV6 || IPAddress.IsLoopback(address))
        {
            return address;
        }

        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out _);
        bytes[8..].Clear();
        return new IPAddress(bytes);
    }
}
