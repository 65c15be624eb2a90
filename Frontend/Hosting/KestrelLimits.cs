using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;

namespace StreamInfer.Frontend.Hosting;

/// <summary>
/// Kestrel's timeouts, set from the frontend's options rather than left to Kestrel's defaults:
/// <see cref="FrontendOptions.KeepAliveTimeout"/> for an idle keep-alive connection and
/// <see cref="FrontendOptions.RequestHeadersTimeout"/> for a request's headers (a client that trickles them holds a
/// connection for no more than that).
/// </summary>
internal static class KestrelLimits
{
    public static IServiceCollection AddKestrelLimits(this IServiceCollection services)
    {
        services.AddOptions<KestrelServerOptions>().Configure<IOptions<FrontendOptions>>((kestrel, frontend) =>
        {
            kestrel.Limits.KeepAliveTimeout = frontend.Value.KeepAliveTimeout;
            kestrel.Limits.RequestHeadersTimeout = frontend.Value.RequestHeadersTimeout;
        });
        return services;
    }
}
