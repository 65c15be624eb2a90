using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Routing;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Grains.Options;

namespace StreamInfer.Frontend.WebSockets;

/// <summary><c>/ws</c>: each WebSocket connection is one client with a session grain of its own.</summary>
internal static class WebSocketEndpoint
{
    public static async Task HandleAsync(
        HttpContext context,
        IClusterClient client,
        DeliveryRouter router,
        FrontendIdentity identity,
        IOptions<FrontendOptions> options,
        IOptions<ClientSessionOptions> sessionOptions,
        TimeProvider time,
        ILoggerFactory loggers)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            await context.Response.WriteAsJsonAsync(new { error = new { code = "bad_request", message = "/ws takes WebSocket upgrade requests only." } });
            return;
        }

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
        await connection.RunAsync(context.RequestAborted);
    }
}
