using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Http;

namespace StreamInfer.Frontend.Operations;

/// <summary>
/// Guards operator endpoints with <see cref="FrontendOptions.AdminKey"/>. An operation (a POST that changes what serves)
/// takes the key only as <c>Authorization: Bearer KEY</c> and its body only as <c>application/json</c>, with or without a
/// configured key: a web page can send neither without the browser asking the frontend first, so it cannot make an
/// operator's browser roll a model back. The dashboard's GET pages also take HTTP Basic with the key as password, which
/// is what a browser sends after its login prompt. Without a configured key the endpoints are open, as on the embedded
/// default.
/// </summary>
internal static class AdminKey
{
    /// <summary>Requires the admin key (when configured) as a bearer token, and a JSON body, on every endpoint of <paramref name="builder"/>.</summary>
    public static TBuilder RequireAdminKey<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder
        => builder.AddEndpointFilter(new Filter(basicForReads: false));

    /// <summary>
    /// Requires the admin key (when configured) on every endpoint of <paramref name="builder"/>: as a bearer token, or,
    /// on GET and HEAD, as the password of HTTP Basic.
    /// </summary>
    public static TBuilder RequireAdminKeyOrBasicForReads<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder
        => builder.AddEndpointFilter(new Filter(basicForReads: true));

    /// <summary>Whether the request carries <paramref name="key"/> (compared in constant time) in a form it may use.</summary>
    internal static bool Presented(HttpRequest request, string key, bool allowBasic)
    {
        var header = request.Headers.Authorization.ToString();
        string? given = null;
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            given = header["Bearer ".Length..].Trim();
        }
        else if (allowBasic && header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
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

    /// <summary>Whether the request's content type is <c>application/json</c> (any parameters, such as a charset).</summary>
    internal static bool IsJson(HttpRequest request)
        => Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(request.ContentType, out var type)
            && type.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase);

    private sealed class Filter(bool basicForReads) : IEndpointFilter
    {
        public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            var http = context.HttpContext;
            var request = http.Request;
            var read = HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method);
            var basic = basicForReads && read;
            var key = http.RequestServices.GetRequiredService<IOptions<FrontendOptions>>().Value.AdminKey;
            if (!string.IsNullOrEmpty(key) && !Presented(request, key, basic))
            {
                // Only a dashboard page asks for the browser's login prompt; an operation names the one form it takes.
                http.Response.Headers.WWWAuthenticate = basic
                    ? "Basic realm=\"StreamInfer\", charset=\"UTF-8\""
                    : "Bearer realm=\"StreamInfer\"";
                await HttpErrors.WriteAsync(http, new InferError(ErrorCode.Unauthorized, basic
                    ? "this page needs the admin key: 'Authorization: Bearer <key>', or HTTP Basic with the key as password."
                    : "this operation needs the admin key as 'Authorization: Bearer <key>'."));
                return Results.Empty;
            }

            if (!basicForReads && !read && !IsJson(request))
            {
                await HttpErrors.WriteAsync(http, new InferError(ErrorCode.UnsupportedMediaType, "operations take 'Content-Type: application/json' only (an empty body is fine)."));
                return Results.Empty;
            }

            return await next(context);
        }
    }
}
