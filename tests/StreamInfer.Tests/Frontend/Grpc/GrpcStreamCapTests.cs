using Grpc.Core;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Tests.Frontend.WebSockets;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.Grpc.GrpcTestTensors;

namespace StreamInfer.Tests.Frontend.Grpc;

/// <summary>A <c>ModelStreamInfer</c> stream counts against its address's connections, as a WebSocket does.</summary>
public sealed class GrpcStreamCapTests
{
    [Fact]
    public async Task ModelStreamInfer_AddressHoldsItsCapInWebSockets_ResourceExhaustedUntilOneCloses()
    {
        var grpc = new Uri($"http://127.0.0.1:{Ports.Free()}");
        await using var grid = await LimitsGrid.StartAsync(false, ("StreamInfer:Frontend:GrpcUrl", grpc.ToString()), ("StreamInfer:Frontend:MaxConnectionsPerLoopback", "1"));
        using var channel = Channel(grpc);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var ws = await WsTestClient.ConnectAsync(grid.Ws);

        using (var refused = client.ModelStreamInfer(deadline: DateTime.UtcNow.AddSeconds(30)))
        {
            var error = await Assert.ThrowsAsync<RpcException>(() => refused.ResponseStream.MoveNext());
            Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
            Assert.Equal("rate_limited", error.Trailers.GetValue("streaminfer-code"));
        }

        await ws.DisposeAsync();
        await Eventually.UntilAsync(() => Task.FromResult(grid.Connections.Connections), n => n == 0, what: "the WebSocket's place frees");
        using var served = client.ModelStreamInfer(deadline: DateTime.UtcNow.AddSeconds(30));
        var request = new ModelInferRequest { ModelName = "echo", Id = "s1" };
        request.Inputs.Add(Input("x", "FP32", 1, 2));
        request.RawInputContents.Add(Google.Protobuf.ByteString.CopyFrom(new byte[8]));
        await served.RequestStream.WriteAsync(request);
        await served.RequestStream.CompleteAsync();
        Assert.True(await served.ResponseStream.MoveNext());
        Assert.Empty(served.ResponseStream.Current.ErrorMessage);
    }
}
