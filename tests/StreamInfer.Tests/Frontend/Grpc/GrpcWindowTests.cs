using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Grains.Models.Stateful;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.Grpc.GrpcTestTensors;

namespace StreamInfer.Tests.Frontend.Grpc;

/// <summary>A sequence's window over gRPC, on the built-in vad-lite: the answer's parameters carry it, and the event
/// its result raised.</summary>
[Collection(FrontendCollection.Name)]
public sealed class GrpcWindowTests(FrontendFixture fixture) : IDisposable
{
    private readonly global::Grpc.Net.Client.GrpcChannel _channel = Channel(fixture.GrpcUri);

    public void Dispose() => _channel.Dispose();

    [Fact]
    public async Task ModelInfer_LoudChunkThenSilentLastChunk_WindowInParametersOnThenOffWithTheEnd()
    {
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(_channel);
        var loud = Enumerable.Range(0, VadLite.ChunkSamples).Select(i => i % 2 == 0 ? 0.3f : -0.3f).ToArray();
        var silent = new float[VadLite.ChunkSamples];
        var reference = new VadLiteReference();

        var first = await client.ModelInferAsync(Chunk("w0", loud, start: true));
        var second = await client.ModelInferAsync(Chunk("w1", silent, start: false));

        var (a, b) = ((double)reference.Next(loud), (double)reference.Next(silent));
        var p = first.Parameters;
        Assert.Equal(("output", 0L, 1L, a, a, "on"), (p["window_output"].StringParam, p["window_index"].Int64Param, p["window_count"].Int64Param, p["window_mean"].DoubleParam, p["window_max"].DoubleParam, p["sequence_event"].StringParam));
        p = second.Parameters;
        // The last chunk ends a sequence that is on: it turns off, whatever the mean.
        Assert.Equal((1L, 2L, (a + b) / 2, a, "off"), (p["window_index"].Int64Param, p["window_count"].Int64Param, p["window_mean"].DoubleParam, p["window_max"].DoubleParam, p["sequence_event"].StringParam));
    }

    private static ModelInferRequest Chunk(string id, float[] samples, bool start)
    {
        var request = new ModelInferRequest { ModelName = VadLite.Name, Id = id };
        request.Inputs.Add(Input("input", "FP32", 1, samples.Length));
        request.Inputs.Add(Input("sr", "INT64"));
        request.RawInputContents.Add(Floats(samples));
        request.RawInputContents.Add(Longs(VadLite.ReferenceSampleRate));
        request.Parameters["sequence_id"] = new InferParameter { StringParam = "grpc-mic" };
        request.Parameters["sequence_start"] = new InferParameter { BoolParam = start };
        request.Parameters["sequence_end"] = new InferParameter { BoolParam = !start };
        return request;
    }
}
