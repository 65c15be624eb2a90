using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using StreamInfer.BareEcho;

// The baseline for bench/: a bare Kestrel server that receives what the grid's protocols carry and answers in kind,
// doing the per-message work each protocol needs and nothing else: no grains, no batching, no streams. Whatever the
// grid measures below this is the price of the grid.
//   /ws                 text frames: parse the infer frame, answer a result frame carrying the inputs back;
//                       binary frames: read the length-prefixed header, answer a binary result with the same bytes
//   POST /predict       the JSON infer body, answered with its inputs
//   POST /v2/models/{m}/infer   KServe v2 JSON, or its binary extension (Inference-Header-Content-Length)
//   gRPC (--grpc-url)   inference.GRPCInferenceService: ModelInfer and ModelStreamInfer answer their inputs as outputs
// Usage: --urls http://127.0.0.1:18010 [--grpc-url http://127.0.0.1:18012]
var builder = WebApplication.CreateBuilder(args);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
var urls = builder.Configuration["urls"] ?? "http://127.0.0.1:18010";
var grpcUrl = builder.Configuration["grpc-url"];
builder.WebHost.ConfigureKestrel(kestrel =>
{
    // A KServe JSON body of a 224×224 image is about 3 MB; the binary extension's is 0.6 MB per image.
    kestrel.Limits.MaxRequestBodySize = 256L << 20;
    foreach (var url in urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
    {
        Listen(kestrel, url, HttpProtocols.Http1);
    }

    // gRPC on a port of its own: HTTP/2 without TLS (h2c) needs an HTTP/2-only endpoint.
    if (!string.IsNullOrEmpty(grpcUrl))
    {
        Listen(kestrel, grpcUrl, HttpProtocols.Http2);
    }
});
builder.Services.AddGrpc(grpc =>
{
    grpc.MaxReceiveMessageSize = 256 << 20;
    grpc.MaxSendMessageSize = 256 << 20;
});
var app = builder.Build();
app.UseWebSockets();
app.Map("/ws", WebSocketEcho.HandleAsync);
app.MapPost("/predict", JsonEcho.PredictAsync);
app.MapPost("/v2/models/{model}/infer", KServeEcho.InferAsync);
app.MapGrpcService<GrpcEcho>();
app.MapGet("/healthz", () => "ok");
app.Run();

static void Listen(KestrelServerOptions kestrel, string url, HttpProtocols protocols)
{
    var uri = new Uri(url);
    var address = uri.Host is "localhost" ? IPAddress.Loopback : IPAddress.Parse(uri.Host);
    kestrel.Listen(address, uri.Port, listen => listen.Protocols = protocols);
}
