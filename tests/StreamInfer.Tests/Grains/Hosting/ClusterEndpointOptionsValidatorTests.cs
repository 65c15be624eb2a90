using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Hosting;
using StreamInfer.Silo;

namespace StreamInfer.Tests.Grains.Hosting;

/// <summary>Every numeric <c>StreamInfer:Orleans</c> setting has a range, checked before the host is built, and so has the
/// standalone silo's metrics port.</summary>
public sealed class ClusterEndpointOptionsValidatorTests
{
    [Fact]
    public void Validate_Defaults_Succeed()
        => Assert.True(new ClusterEndpointOptionsValidator().Validate(null, new ClusterEndpointOptions()).Succeeded);

    [Fact]
    public void Validate_EachFieldPastItsRange_FailsNamingEveryOne()
    {
        var options = new ClusterEndpointOptions
        {
            SiloPort = 0,
            GatewayPort = 65536,
            Redis = "127.0.0.1:6379",
            AdvertisedAddress = "silo-1",
            ProbeTimeout = TimeSpan.FromMilliseconds(100),
            MissedProbesLimit = 11,
            GatewayListRefreshPeriod = TimeSpan.FromMinutes(5),
        };

        var result = new ClusterEndpointOptionsValidator().Validate(null, options);

        Assert.True(result.Failed);
        Assert.Contains("StreamInfer:Orleans:SiloPort must be in [1, 65535]; got 0.", result.FailureMessage, StringComparison.Ordinal);
        Assert.Contains("StreamInfer:Orleans:GatewayPort must be in [1, 65535]; got 65536.", result.FailureMessage, StringComparison.Ordinal);
        Assert.Contains("StreamInfer:Orleans:AdvertisedAddress must be an IP address; got 'silo-1'.", result.FailureMessage, StringComparison.Ordinal);
        Assert.Contains("StreamInfer:Orleans:ProbeTimeout must be in [0.5 s, 60 s]", result.FailureMessage, StringComparison.Ordinal);
        Assert.Contains("StreamInfer:Orleans:MissedProbesLimit must be in [1, 10]; got 11.", result.FailureMessage, StringComparison.Ordinal);
        Assert.Contains("StreamInfer:Orleans:GatewayListRefreshPeriod must be in [0.1 s, 60 s]", result.FailureMessage, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_AdvertisedAddressUnderKubernetesOrWithoutRedis_NotChecked()
    {
        Assert.True(new ClusterEndpointOptionsValidator().Validate(null, new ClusterEndpointOptions { AdvertisedAddress = "x" }).Succeeded);
        Assert.True(new ClusterEndpointOptionsValidator().Validate(null, new ClusterEndpointOptions { AdvertisedAddress = "x", Redis = "r:6379", Kubernetes = true }).Succeeded);
    }

    [Theory]
    [InlineData("StreamInfer:Orleans:MissedProbesLimit", "0", "MissedProbesLimit must be in [1, 10]")]
    [InlineData("StreamInfer:Metrics:Port", "70000", "StreamInfer:Metrics:Port must be 0 (off) or in [1, 65535]")]
    public void Build_SettingOutOfRange_SiloRefusesToStartNamingIt(string key, string value, string named)
    {
        var ex = Assert.Throws<OptionsValidationException>(() => SiloHost.Build([], b => b.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { [key] = value })).Dispose());

        Assert.Contains(named, ex.Message, StringComparison.Ordinal);
    }
}
