using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.Grpc.GrpcTestTensors;

namespace StreamInfer.Tests.Frontend.Grpc;

/// <summary>
/// The request bytes one <c>ModelStreamInfer</c> holds, on a grid of its own: 16 KiB in flight at most, and <c>hold</c>,
/// an echo that waits 500 ms for batch-mates, so every request read from the stream by then shares a batch.
/// </summary>
public sealed class GrpcStreamBudgetTests : IAsyncLifetime
{
    private const int MaxInFlightBytes = 16 << 10;

    private WebApplication _app = null!;
    private global::Grpc.Net.Client.GrpcChannel _channel = null!;

    public async Task InitializeAsync()
    {
        var grpc = $"http://127.0.0.1:{Ports.Free()}";
        (_app, _) = await FrontendFixture.StartGridAsync(FrontendFixture.IsolatedSettings(
            extra:
            [
                ("StreamInfer:Frontend:GrpcUrl", grpc),
                ("StreamInfer:Frontend:MaxBinaryBytes", MaxInFlightBytes.ToString(CultureInfo.InvariantCulture)),
                ("StreamInfer:Frontend:MaxInFlightBytes", MaxInFlightBytes.ToString(CultureInfo.InvariantCulture)),
                ("StreamInfer:Models:hold:MaxBatchSize", "100"),
                ("StreamInfer:Models:hold:MaxWait", "00:00:00.500"),
            ]));
        _channel = Channel(new Uri(grpc));
    }

    public async Task DisposeAsync()
    {
        _channel.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task ModelStreamInfer_RequestsHeldPastMaxInFlightBytes_NotReadUntilTheyEndThenAllAnswered()
    {
        // 6 KiB each: two fit in the budget, a third waits for them to end.
        using var call = new GRPCInferenceService.GRPCInferenceServiceClient(_channel).ModelStreamInfer(deadline: DateTime.UtcNow.AddSeconds(30));
        for (var i = 0; i < 5; i++)
        {
            var request = new ModelInferRequest { ModelName = "hold", Id = $"h{i}" };
            request.Inputs.Add(Input("y", "FP32", 1536));
            request.RawInputContents.Add(ByteString.CopyFrom(new byte[1536 * 4]));
            await call.RequestStream.WriteAsync(request);
        }

        await call.RequestStream.CompleteAsync();
        var answers = new List<ModelStreamInferResponse>();
        await foreach (var answer in call.ResponseStream.ReadAllAsync())
        {
            answers.Add(answer);
        }

        Assert.All(answers, a => Assert.Empty(a.ErrorMessage));
        Assert.Equal(["h0", "h1", "h2", "h3", "h4"], answers.Select(a => a.InferResponse.Id).Order());
        // Unbounded, all five would be read within the first batch's wait and share it.
        Assert.All(answers, a => Assert.InRange(a.InferResponse.Parameters["batch_size"].Int64Param, 1, 2));
    }
}
