using System.Net;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Hosting;

namespace StreamInfer.Tests.Frontend.Hosting;

public sealed class ConnectionsPerAddressTests
{
    private readonly ConnectionsPerAddress _addresses = new(Options.Create(new FrontendOptions { MaxConnectionsPerAddress = 2, MaxConnectionsPerLoopback = 3 }));

    [Fact]
    public void TryTake_IPv4_CapThenFreedByRelease_OtherAddressesApart()
    {
        var a = IPAddress.Parse("203.0.113.7");
        Assert.True(_addresses.TryTake(a, out var k1));
        Assert.True(_addresses.TryTake(IPAddress.Parse("::ffff:203.0.113.7"), out var k2));
        Assert.False(_addresses.TryTake(a, out _));
        Assert.True(_addresses.TryTake(IPAddress.Parse("203.0.113.8"), out _));

        _addresses.Release(k1);
        Assert.Equal(1, _addresses.Held(a));
        Assert.True(_addresses.TryTake(a, out _));
        _addresses.Release(k2);
    }

    [Fact]
    public void TryTake_IPv6_CountedByTheSlash64()
    {
        Assert.True(_addresses.TryTake(IPAddress.Parse("2001:db8:1:2::1"), out _));
        Assert.True(_addresses.TryTake(IPAddress.Parse("2001:db8:1:2:ffff::9"), out _));
        Assert.False(_addresses.TryTake(IPAddress.Parse("2001:db8:1:2:abcd::5"), out _));
        Assert.True(_addresses.TryTake(IPAddress.Parse("2001:db8:1:3::1"), out _));
    }

    [Fact]
    public void TryTake_LoopbackOrNoAddress_OwnCapOrNone()
    {
        for (var i = 0; i < 3; i++)
        {
            Assert.True(_addresses.TryTake(IPAddress.Loopback, out _));
        }

        Assert.False(_addresses.TryTake(IPAddress.Loopback, out _));
        Assert.True(_addresses.TryTake(null, out var none));
        Assert.Null(none);
    }
}
