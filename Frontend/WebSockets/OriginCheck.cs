using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Http;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>
/// Which web pages may open a WebSocket to the frontend. A browser sends its page's <c>Origin</c> with every upgrade and
/// lets any page open one, with the user's cookies and network position: without a check, any site the operator visits
/// could drive the grid from their browser. A request without <c>Origin</c> is not from a browser and passes; one from
/// the frontend's own origin (scheme, host and port of the request) passes; others pass only when listed in
/// <see cref="FrontendOptions.AllowedOrigins"/>.
/// </summary>
internal static class OriginCheck
{
    /// <summary>The refusal (403 <c>forbidden</c>) for an upgrade from an origin not allowed; null when it may go on.</summary>
    public static IResult? Refusal(HttpContext context, FrontendOptions options)
    {
        var origin = context.Request.Headers.Origin.ToString();
        if (origin.Length == 0 || Allowed(origin, context.Request, options.AllowedOrigins))
        {
            return null;
        }

        return HttpErrors.Protocol(new InferError(ErrorCode.Forbidden, $"WebSocket connections from pages of origin '{Truncated(origin)}' are not allowed; the frontend's operators list the origins it accepts."));
    }

    /// <summary>Whether a request with <paramref name="origin"/> may connect.</summary>
    internal static bool Allowed(string origin, HttpRequest request, IReadOnlyCollection<string> allowed)
    {
        if (!Uri.TryCreate(origin, UriKind.Absolute, out var from))
        {
            // "null" (a sandboxed page, a file) or garbage: no origin to match.
            return allowed.Contains("*");
        }

        if (Uri.TryCreate($"{request.Scheme}://{request.Host}", UriKind.Absolute, out var own) && SameOrigin(from, own))
        {
            return true;
        }

        return allowed.Any(a => a == "*" || (Uri.TryCreate(a, UriKind.Absolute, out var listed) && SameOrigin(from, listed)));
    }

    private static bool SameOrigin(Uri a, Uri b)
        => a.Scheme.Equals(b.Scheme, StringComparison.OrdinalIgnoreCase)
            && a.Host.Equals(b.Host, StringComparison.OrdinalIgnoreCase)
            && a.Port == b.Port;

    private static string Truncated(string origin) => origin.Length <= 100 ? origin : origin[..100] + "...";
}
