using StreamInfer.Grains.Metrics;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.Requests;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>What <c>/ws</c> takes (as <c>[AsParameters]</c>).</summary>
internal readonly record struct WebSocketServices(
    RequestSubmitter Submitter,
    FrontendDrain Drain,
    ConnectionsPerAddress Addresses,
    IOptions<FrontendOptions> Options,
    TimeProvider Time,
    GridMetrics Metrics,
    ILogger<ClientConnection> Logger);

/// <summary><c>/ws</c>: each WebSocket connection is one client with a session grain of its own (an API key's
/// connections share the key's session), up to <see cref="FrontendOptions.MaxConnections"/> per frontend and
/// <see cref="FrontendOptions.MaxConnectionsPerAddress"/> per remote address.</summary>
internal static class WebSocketEndpoint
{
    public static async Task<IResult> HandleAsync(HttpContext context, [AsParameters] WebSocketServices services)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            return TypedResults.BadRequest(new { error = new { code = "bad_request", message = "/ws takes WebSocket upgrade requests only." } });
        }

        if (OriginCheck.Refusal(context, services.Options.Value) is { } refused) return refused;

        var drain = services.Drain;
        if (!drain.TryReserve())
        {
            // Refused before the upgrade, so the client sees an HTTP status it can act on: another frontend, or later.
            return HttpErrors.Protocol(drain.IsDraining
                ? new InferError(ErrorCode.ModelUnavailable, "this frontend is shutting down; connect to another.", 1000)
                : new InferError(ErrorCode.Overloaded, $"this frontend holds its maximum of {services.Options.Value.MaxConnections} connections; connect to another, or retry later.", 1000));
        }

        if (!services.Addresses.TryTake(context.Connection.RemoteIpAddress, out var address))
        {
            drain.Release();
            return HttpErrors.Protocol(new InferError(ErrorCode.RateLimited, $"this address holds its maximum of {services.Addresses.LimitFor(address!)} connections to this frontend; close one before opening another.", 1000));
        }

        try
        {
            // A browser offers its key as a subprotocol beside the real one, which is the one selected: the key is never echoed.
            var client = ClientAuth.Client(context);
            using var socket = await context.WebSockets.AcceptWebSocketAsync(context.WebSockets.WebSocketRequestedProtocols.Contains(ClientAuth.Subprotocol) ? ClientAuth.Subprotocol : null);
            using var connection = new ClientConnection(socket, client, services.Submitter, services.Options.Value, services.Time, services.Metrics, services.Logger);
            drain.Opened(connection);
            try
            {
                await connection.RunAsync(context.RequestAborted);
            }
            finally
            {
                drain.Closed(connection);
            }
        }
        finally
        {
            services.Addresses.Release(address);
            drain.Release();
        }

        return Results.Empty;
    }
}
