using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Http;

namespace StreamInfer.Frontend.Operations;

/// <summary>
/// Guards operator endpoints (the dashboard, rollouts, reload) with <see cref="FrontendOptions.AdminKey"/> when one is
/// configured: the request must carry it as <c>Authorization: Bearer KEY</c>, or as the password of HTTP Basic
/// authentication (any user name), which is what a browser sends after its login prompt. Without a configured key the
/// endpoints are open, as on the embedded default.
/// </summary>
internal static class AdminKey
{
    /// <summary>Requires the admin key (when configured) on every endpoint of <paramref name="builder"/>.</summary>
    public static TBuilder RequireAdminKey<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder
        => builder.AddEndpointFilter<TBuilder, Filter>();

    /// <summary>Whether the request carries <paramref name="key"/> (compared in constant time).</summary>
    internal static bool Presented(HttpRequest request, string key)
    {
        var header = request.Headers.Authorization.ToString();
        string? given = null;
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            given = header["Bearer ".Length..].Trim();
        }
        else if (header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                var decoded = Encoding.UTF8.GetString(Convert.FromBase64String(header["Basic ".Length..].Trim()));
                var colon = decoded.IndexOf(':', StringComparison.Ordinal);
                given = colon < 0 ? null : decoded[(colon + 1)..];
            }
            catch (FormatException)
            {
                given = null;
            }
        }

        return given is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(key));
    }

    private sealed class Filter(IOptions<FrontendOptions> options) : IEndpointFilter
    {
        public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            var key = options.Value.AdminKey;
            if (string.IsNullOrEmpty(key) || Presented(context.HttpContext.Request, key))
            {
                return await next(context);
            }

            // A browser answers this with its login prompt; the key goes in the password field.
            context.HttpContext.Response.Headers.WWWAuthenticate = "Basic realm=\"StreamInfer\", charset=\"UTF-8\"";
            await HttpErrors.WriteAsync(context.HttpContext, new InferError(ErrorCode.Unauthorized, "this endpoint needs the admin key: 'Authorization: Bearer <key>', or HTTP Basic with the key as password."));
            return Results.Empty;
        }
    }
}
