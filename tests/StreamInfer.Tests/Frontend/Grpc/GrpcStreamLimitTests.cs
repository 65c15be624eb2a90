using Grpc.Core;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Tests.Frontend.WebSockets;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.Grpc.GrpcTestTensors;

namespace StreamInfer.Tests.Frontend.Grpc;

/// <summary>
/// A <c>ModelStreamInfer</c> stream meets a WebSocket's limits: the idle timeout, the messages-per-second budget, and
/// the frontend's connections.
/// </summary>
public sealed class GrpcStreamLimitTests
{
    [Fact]
    public async Task ModelStreamInfer_SilentPastTheIdleTimeout_EndsDeadlineExceeded_NotWhileARequestRuns()
    {
        var grpc = new Uri($"http://127.0.0.1:{Ports.Free()}");
        await using var grid = await LimitsGrid.StartAsync(
            false,
            ("StreamInfer:Frontend:GrpcUrl", grpc.ToString()),
            ("StreamInfer:Frontend:IdleTimeout", "00:00:00.500"),
            // A lone request waits two seconds for a batch-mate: in flight for four idle timeouts.
            ("StreamInfer:Models:gate:MaxBatchSize", "2"),
            ("StreamInfer:Models:gate:MaxWait", "00:00:02"));
        using var channel = Channel(grpc);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        using var busy = client.ModelStreamInfer(deadline: DateTime.UtcNow.AddSeconds(30));
        await busy.RequestStream.WriteAsync(Echo("waits", "gate"));
        using var idle = client.ModelStreamInfer(deadline: DateTime.UtcNow.AddSeconds(30));

        var ended = await Assert.ThrowsAsync<RpcException>(() => idle.ResponseStream.MoveNext());
        Assert.Equal(StatusCode.DeadlineExceeded, ended.StatusCode);
        Assert.Equal("deadline_exceeded", ended.Trailers.GetValue("streaminfer-code"));
        Assert.Contains("IdleTimeout", ended.Status.Detail, StringComparison.Ordinal);

        // The busy one gets its answer, then ends in turn once idle; its places are given back.
        Assert.True(await busy.ResponseStream.MoveNext());
        Assert.Empty(busy.ResponseStream.Current.ErrorMessage);
        Assert.Equal(StatusCode.DeadlineExceeded, (await Assert.ThrowsAsync<RpcException>(() => busy.ResponseStream.MoveNext())).StatusCode);
        await Eventually.UntilAsync(() => Task.FromResult(grid.Connections.Connections), n => n == 0, what: "the streams' places free");
    }

    [Fact]
    public async Task ModelStreamInfer_FloodPastItsMessageBudget_RateLimitedUnreadThenResourceExhausted()
    {
        var grpc = new Uri($"http://127.0.0.1:{Ports.Free()}");
        await using var grid = await LimitsGrid.StartAsync(
            false,
            ("StreamInfer:Frontend:GrpcUrl", grpc.ToString()),
            ("StreamInfer:Frontend:MaxFramesPerSecond", "20"),
            ("StreamInfer:Frontend:OverBudgetCloseAfter", "00:00:01"));
        using var channel = Channel(grpc);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var flood = client.ModelStreamInfer(deadline: DateTime.UtcNow.AddSeconds(30));

        var sending = Task.Run(async () =>
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            try
            {
                // Messages naming no model: each within the budget costs a lookup, each past it nothing.
                for (var i = 0; DateTime.UtcNow < deadline; i++)
                {
                    await flood.RequestStream.WriteAsync(Echo($"m{i}", "no-such-model"));
                    await Task.Delay(5);
                }
            }
            catch (Exception ex) when (ex is RpcException or InvalidOperationException or ObjectDisposedException)
            {
                // Ended under it.
            }
        });

        var codes = new List<string>();
        var ended = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await flood.ResponseStream.MoveNext())
            {
                codes.Add(flood.ResponseStream.Current.InferResponse.Parameters["streaminfer_code"].StringParam);
            }
        });
        await sending;

        Assert.Equal(StatusCode.ResourceExhausted, ended.StatusCode);
        Assert.Equal("rate_limited", ended.Trailers.GetValue("streaminfer-code"));
        Assert.Contains("unknown_model", codes);
        Assert.Contains("rate_limited", codes);
        // Looked at (a model lookup each): no more than the budget let through in the time the stream lived, a second's
        // burst and 20 a second, however fast the client managed to send.
        var looked = codes.Count(c => c == "unknown_model");
        Assert.True(looked <= 20 + (20 * clock.Elapsed.TotalSeconds) + 1, $"{looked} looked at in {clock.Elapsed.TotalSeconds:0.00} s: " + string.Join(",", codes.CountBy(c => c)));
    }

    [Fact]
    public async Task ModelStreamInfer_FrontendAtMaxConnections_UnavailableOverloaded()
    {
        var grpc = new Uri($"http://127.0.0.1:{Ports.Free()}");
        await using var grid = await LimitsGrid.StartAsync(false, ("StreamInfer:Frontend:GrpcUrl", grpc.ToString()), ("StreamInfer:Frontend:MaxConnections", "1"));
        using var channel = Channel(grpc);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        await using var ws = await WsTestClient.ConnectAsync(grid.Ws);

        using var refused = client.ModelStreamInfer(deadline: DateTime.UtcNow.AddSeconds(30));
        var error = await Assert.ThrowsAsync<RpcException>(() => refused.ResponseStream.MoveNext());
        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
        Assert.Equal("overloaded", error.Trailers.GetValue("streaminfer-code"));
    }

    private static ModelInferRequest Echo(string id, string model)
    {
        var request = new ModelInferRequest { ModelName = model, Id = id };
        request.Inputs.Add(Input("x", "FP32", 1, 2));
        request.RawInputContents.Add(Google.Protobuf.ByteString.CopyFrom(new byte[8]));
        return request;
    }
}
