using System.Buffers;
using System.Net.WebSockets;
using System.Text.Json;

// The baseline for bench/: a bare Kestrel WebSocket (and HTTP /predict) server that does the per-frame JSON work the grid's protocol needs
// (parse the infer frame, answer a result frame carrying the inputs back) and nothing else: no grains, no batching,
// no streams. Whatever the grid measures below this is the price of the grid. Usage: --urls http://127.0.0.1:18010
var builder = WebApplication.CreateBuilder(args);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
var app = builder.Build();
app.UseWebSockets();
app.Map("/ws", async context =>
{
    if (!context.WebSockets.IsWebSocketRequest)
    {
        context.Response.StatusCode = StatusCodes.Status400BadRequest;
        return;
    }

    using var socket = await context.WebSockets.AcceptWebSocketAsync();
    var buffer = new byte[1 << 16];
    var output = new ArrayBufferWriter<byte>(1024);
    try
    {
        while (true)
        {
            var count = 0;
            ValueWebSocketReceiveResult received;
            do
            {
                received = await socket.ReceiveAsync(buffer.AsMemory(count), context.RequestAborted);
                count += received.Count;
            }
            while (!received.EndOfMessage);

            if (received.MessageType == WebSocketMessageType.Close)
            {
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                return;
            }

            using var frame = JsonDocument.Parse(buffer.AsMemory(0, count));
            var root = frame.RootElement;
            output.ResetWrittenCount();
            using (var writer = new Utf8JsonWriter(output))
            {
                writer.WriteStartObject();
                writer.WriteString("type", "result");
                writer.WriteString("id", root.GetProperty("id").GetString());
                writer.WriteString("model", root.GetProperty("model").GetString());
                writer.WriteString("model_version", "1");
                writer.WritePropertyName("outputs");
                root.GetProperty("inputs").WriteTo(writer);
                writer.WriteEndObject();
            }

            await socket.SendAsync(output.WrittenMemory, WebSocketMessageType.Text, endOfMessage: true, context.RequestAborted);
        }
    }
    catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
    {
    }
});
// The same answer over HTTP, for the /predict baseline: parse the infer body, write the result back.
app.MapPost("/predict", async context =>
{
    using var body = await JsonDocument.ParseAsync(context.Request.Body, default, context.RequestAborted);
    var root = body.RootElement;
    context.Response.ContentType = "application/json";
    await using var writer = new Utf8JsonWriter(context.Response.BodyWriter);
    writer.WriteStartObject();
    writer.WriteString("id", root.TryGetProperty("id", out var id) ? id.GetString() : null);
    writer.WriteString("model", root.GetProperty("model").GetString());
    writer.WriteString("model_version", "1");
    writer.WritePropertyName("outputs");
    root.GetProperty("inputs").WriteTo(writer);
    writer.WriteEndObject();
    await writer.FlushAsync(context.RequestAborted);
});
app.MapGet("/healthz", () => "ok");
app.Run();
