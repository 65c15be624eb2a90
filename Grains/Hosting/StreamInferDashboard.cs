using Microsoft.Extensions.Configuration;

namespace StreamInfer.Grains.Hosting;

/// <summary>
/// The Orleans dashboard (<c>Microsoft.Orleans.Dashboard</c>): silos run its grain service, frontends serve its page at
/// <c>/dashboard</c>. One setting for both, <c>StreamInfer:Dashboard:Enabled</c> (default true): set it alike everywhere.
/// </summary>
public static class StreamInferDashboard
{
    public const string Section = "StreamInfer:Dashboard";

    /// <summary>The route the frontend serves it under.</summary>
    public const string Route = "/dashboard";

    public static bool Enabled(IConfiguration configuration) => configuration.GetValue($"{Section}:Enabled", true);
}
