using System.Globalization;
using System.Net.Http.Headers;
using Grpc.AspNetCore.Server;
using Grpc.Core;
using StreamInfer.Frontend.Grpc;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.OpenAI;

namespace StreamInfer.Frontend.Auth;

/// <summary>How a serving endpoint writes a refusal: the protocol's JSON error, OpenAI's, or a gRPC status.</summary>
internal enum RefusalShape
{
    Protocol,
    OpenAI,
    Grpc,
}

/// <summary>Endpoint metadata: the endpoint serves clients, so its caller is identified (and, with keys, must present one).</summary>
internal sealed record ServingEndpoint(RefusalShape Shape);

/// <summary>
/// Identifies the caller of every serving endpoint before anything of its request is read: with keys configured, from
/// <c>Authorization: Bearer KEY</c> (on a WebSocket upgrade also from a <c>Sec-WebSocket-Protocol</c> value
/// <c>streaminfer.bearer.KEY</c>), refusing a missing or unknown key with <c>unauthorized</c>; without keys, by address
/// or a trusted proxy's <c>X-Client-Id</c>. A keyed client's WebSocket connections and gRPC streams count against its
/// key's cap while they last.
/// </summary>
internal static class ClientAuth
{
    /// <summary>The prefix of the <c>Sec-WebSocket-Protocol</c> value that carries a key (browsers cannot set headers on a WebSocket).</summary>
    public const string BearerSubprotocol = "streaminfer.bearer.";

    /// <summary>The subprotocol the server selects when the client offers it beside its key.</summary>
    public const string Subprotocol = "streaminfer";

    /// <summary>gRPC methods that stay open: liveness and readiness, as <c>/healthz</c> and <c>/readyz</c> do.</summary>
    private static readonly HashSet<string> OpenGrpcMethods = new(StringComparer.Ordinal) { "ServerLive", "ServerReady" };

    /// <summary>Marks endpoints as serving clients, with the shape their refusals take.</summary>
    public static TBuilder ServesClients<TBuilder>(this TBuilder builder, RefusalShape shape)
        where TBuilder : IEndpointConventionBuilder
        => builder.WithMetadata(new ServingEndpoint(shape));

    /// <summary>
    /// Refuses, as <c>unknown_model</c>, a route about a model (its <c>{name}</c>) that the caller's key does not list:
    /// metadata and readiness tell of a model's existence as much as inference does.
    /// </summary>
    public static TBuilder OnlyClientsModels<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder
        => builder.AddEndpointFilter(static (context, next) => context.HttpContext.GetRouteValue("name") is string name && Client(context.HttpContext).Refuse(name) is { } refusal
            ? ValueTask.FromResult<object?>(HttpErrors.Protocol(refusal))
            : next(context));

    /// <summary>Forwarded headers from trusted proxies only, then the identification of serving endpoints' callers.</summary>
    public static WebApplication UseClientAuth(this WebApplication app)
    {
        var proxies = app.Services.GetRequiredService<TrustedProxies>();
        if (proxies.Any)
        {
            app.Use((context, next) =>
            {
                context.Features.Set(new PeerAddress(context.Connection.RemoteIpAddress));
                return next(context);
            });
            app.UseForwardedHeaders(proxies.ForwardingOptions());
        }

        var ring = app.Services.GetRequiredService<ApiKeyRing>();
        var slots = app.Services.GetRequiredService<ConnectionSlots>();
        app.Use((context, next) => context.GetEndpoint()?.Metadata is { } metadata && metadata.GetMetadata<ServingEndpoint>() is { } serving
            && !(metadata.GetMetadata<GrpcMethodMetadata>() is { } open && OpenGrpcMethods.Contains(open.Method.Name))
                ? AdmitAsync(context, next, serving.Shape, metadata.GetMetadata<GrpcMethodMetadata>()?.Method.Type, ring, proxies, slots)
                : next(context));
        return app;
    }

    /// <summary>The caller a serving endpoint's request comes from (identified before the endpoint ran).</summary>
    public static ClientIdentity Client(HttpContext context)
        => context.Features.Get<ClientIdentity>()
           ?? context.RequestServices.GetRequiredService<ApiKeyRing>().Anonymous(context.RequestServices.GetRequiredService<TrustedProxies>().CallerName(context));

    private static async Task AdmitAsync(HttpContext context, RequestDelegate next, RefusalShape shape, MethodType? grpcMethod, ApiKeyRing ring, TrustedProxies proxies, ConnectionSlots slots)
    {
        ClientIdentity client;
        if (!ring.KeysRequired)
        {
            client = ring.Anonymous(proxies.CallerName(context));
        }
        else if (PresentedKey(context) is not { } key || !ring.TryFind(key, out client))
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
            await RefuseAsync(context, shape, new InferError(ErrorCode.Unauthorized, "an API key is required: send 'Authorization: Bearer KEY' (see docs/protocol.md, Authentication)."));
            return;
        }

        context.Features.Set(client);
        var holdsConnection = context.WebSockets.IsWebSocketRequest || grpcMethod is MethodType.DuplexStreaming or MethodType.ClientStreaming or MethodType.ServerStreaming;
        if (!holdsConnection || client.MaxConnections is not { } cap)
        {
            await next(context);
            return;
        }

        if (!slots.TryTake(client.Name, cap))
        {
            await RefuseAsync(context, shape, new InferError(ErrorCode.RateLimited, $"this key holds its maximum of {cap} connections on this frontend; close one, or retry later.", 1000));
            return;
        }

        try
        {
            await next(context);
        }
        finally
        {
            slots.Release(client.Name);
        }
    }

    /// <summary>The key the request presents: its bearer token, or on a WebSocket upgrade a <c>streaminfer.bearer.</c> subprotocol.</summary>
    private static string? PresentedKey(HttpContext context)
    {
        if (AuthenticationHeaderValue.TryParse(context.Request.Headers.Authorization.ToString(), out var header)
            && header.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase) && header.Parameter is { Length: > 0 } token)
        {
            return token;
        }

        if (context.WebSockets.IsWebSocketRequest)
        {
            foreach (var offered in context.WebSockets.WebSocketRequestedProtocols)
            {
                if (offered.StartsWith(BearerSubprotocol, StringComparison.Ordinal) && offered.Length > BearerSubprotocol.Length)
                {
                    return offered[BearerSubprotocol.Length..];
                }
            }
        }

        return null;
    }

    private static Task RefuseAsync(HttpContext context, RefusalShape shape, InferError error)
    {
        switch (shape)
        {
            case RefusalShape.OpenAI:
                return OpenAIErrors.Result(error).ExecuteAsync(context);
            case RefusalShape.Grpc:
                // A trailers-only answer: the status goes in the headers and no message is read or written.
                context.Response.StatusCode = StatusCodes.Status200OK;
                context.Response.ContentType = "application/grpc";
                context.Response.Headers["grpc-status"] = ((int)error.Code.ToStatusCode()).ToString(CultureInfo.InvariantCulture);
                context.Response.Headers["grpc-message"] = Uri.EscapeDataString(error.Message);
                context.Response.Headers[GrpcErrors.CodeKey] = error.Code.ToWire();
                if (error.RetryAfterMs is { } retry)
                {
                    context.Response.Headers[GrpcErrors.RetryAfterKey] = retry.ToString(CultureInfo.InvariantCulture);
                }

                return Task.CompletedTask;
            default:
                return HttpErrors.WriteAsync(context, error);
        }
    }
}
