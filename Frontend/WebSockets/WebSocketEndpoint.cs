using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Routing;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Http;
using StreamInfer.Grains.Options;

namespace StreamInfer.Frontend.WebSockets;

/// <summary><c>/ws</c>: each WebSocket connection is one client with a session grain of its own, up to
/// <see cref="FrontendOptions.MaxConnections"/> per frontend.</summary>
internal static class WebSocketEndpoint
{
    public static async Task HandleAsync(
        HttpContext context,
        IClusterClient client,
        DeliveryRouter router,
        FrontendIdentity identity,
        IOptions<FrontendOptions> options,
        IOptions<ClientSessionOptions> sessionOptions,
        FrontendDrain drain,
        TimeProvider time,
        ILoggerFactory loggers)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            await context.Response.WriteAsJsonAsync(new { error = new { code = "bad_request", message = "/ws takes WebSocket upgrade requests only." } });
            return;
        }

        if (!drain.TryReserve())
        {
            // Refused before the upgrade, so the client sees an HTTP status it can act on: another frontend, or later.
            var error = drain.IsDraining
                ? new InferError(ErrorCode.ModelUnavailable, "this frontend is shutting down; connect to another.", 1000)
                : new InferError(ErrorCode.Overloaded, $"this frontend holds its maximum of {options.Value.MaxConnections} connections; connect to another, or retry later.", 1000);
            await PredictEndpoint.WriteErrorAsync(context, error);
            return;
        }

        try
        {
            using var socket = await context.WebSockets.AcceptWebSocketAsync();
            using var connection = new ClientConnection(
                socket,
                $"ws-{Guid.NewGuid():N}",
                client,
                router,
                identity,
                options.Value,
                sessionOptions.Value,
                time,
                loggers.CreateLogger<ClientConnection>());
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
            drain.Release();
        }
    }
}
