using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using StreamInfer.Grains.Metrics;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>Grid metrics on a meter factory of their own, for types built by hand outside a host.</summary>
internal static class TestMetrics
{
    public static GridMetrics Create()
        => new(new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<IMeterFactory>());
}
