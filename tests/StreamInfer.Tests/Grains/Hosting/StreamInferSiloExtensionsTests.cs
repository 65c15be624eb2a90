using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Hosting;

[Collection(ClusterCollection.Name)]
public sealed class StreamInferSiloExtensionsTests(ClusterFixture fixture)
{
    /// <summary>
    /// Orleans' watchdog can read its participant-check timestamp before setting it (0); with the host clock that read
    /// spans the machine's uptime and logs a stall on a fresh start. On a StreamInfer silo the membership clock counts
    /// from the silo's creation, so an unset timestamp spans no more than this process has lived.
    /// </summary>
    [Fact]
    public void AddStreamInfer_MembershipClock_UnsetTimestampSpansLessThanTheProcessLifetime()
    {
        var services = fixture.Cluster.GetSiloServiceProvider(fixture.Cluster.Primary!.SiloAddress);
        var membership = services.GetRequiredKeyedService<TimeProvider>(TimeProviderNames.Membership);
        using var process = Process.GetCurrentProcess();
        var processLifetime = DateTime.Now - process.StartTime;

        var sinceZero = membership.GetElapsedTime(0);

        Assert.InRange(sinceZero, TimeSpan.Zero, processLifetime);
        var start = membership.GetTimestamp();
        Assert.Equal(Stopwatch.Frequency, membership.TimestampFrequency);
        Assert.True(membership.GetElapsedTime(start) < TimeSpan.FromSeconds(5));
    }
}
