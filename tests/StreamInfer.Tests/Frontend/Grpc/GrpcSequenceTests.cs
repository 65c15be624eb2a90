using Grpc.Core;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.Grpc.GrpcTestTensors;

namespace StreamInfer.Tests.Frontend.Grpc;

/// <summary>
/// Stateful sequences over gRPC: Triton's <c>sequence_id</c> (string or integer), <c>sequence_start</c> and
/// <c>sequence_end</c> parameters; misuse answered with the codes' statuses; a stream's sequence answered in the order
/// it was sent.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class GrpcSequenceTests(FrontendFixture fixture) : IDisposable
{
    private readonly global::Grpc.Net.Client.GrpcChannel _channel = Channel(fixture.GrpcUri);

    private GRPCInferenceService.GRPCInferenceServiceClient Client => new(_channel);

    public void Dispose() => _channel.Dispose();

    [Fact]
    public async Task ModelInfer_IntegerIdOfNoRunningSequence_NotFoundUnknownSequenceNamingIt()
    {
        var request = InSequence("g1", new InferParameter { Int64Param = 4242 }, start: false);

        var failure = await Assert.ThrowsAsync<RpcException>(() => Client.ModelInferAsync(request).ResponseAsync);

        Assert.Equal((StatusCode.NotFound, "unknown_sequence"), (failure.StatusCode, failure.Trailers.GetValue("streaminfer-code")));
        Assert.Contains("'4242'", failure.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ModelInfer_FlagNotBool_InvalidArgumentBadRequest()
    {
        var request = InSequence("g2", new InferParameter { StringParam = "s" }, start: false);
        request.Parameters["sequence_start"] = new InferParameter { StringParam = "true" };

        var failure = await Assert.ThrowsAsync<RpcException>(() => Client.ModelInferAsync(request).ResponseAsync);

        Assert.Equal((StatusCode.InvalidArgument, "bad_request"), (failure.StatusCode, failure.Trailers.GetValue("streaminfer-code")));
        Assert.Contains("sequence_start", failure.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ModelStreamInfer_SequenceSentBackToBack_AnsweredInSendOrder()
    {
        using var call = Client.ModelStreamInfer(deadline: DateTime.UtcNow.AddSeconds(30));
        var ids = Enumerable.Range(0, 16).Select(i => $"q{i}").ToList();
        var sequence = new InferParameter { Uint64Param = (ulong)Random.Shared.NextInt64(1, long.MaxValue) };
        for (var i = 0; i < ids.Count; i++)
        {
            await call.RequestStream.WriteAsync(InSequence(ids[i], sequence, start: i == 0, end: i == ids.Count - 1));
        }

        await call.RequestStream.CompleteAsync();
        var answers = new List<ModelStreamInferResponse>();
        await foreach (var answer in call.ResponseStream.ReadAllAsync())
        {
            answers.Add(answer);
        }

        // One admission after another and one request at the batcher at a time: each ends before the next runs.
        Assert.Equal(ids, answers.Select(a => a.InferResponse.Id));
        Assert.All(answers, a => Assert.Empty(a.ErrorMessage));
    }

    [Fact]
    public async Task ModelStreamInfer_StreamClosesWithSequenceOpen_SequenceEnded()
    {
        var sequence = new InferParameter { StringParam = $"open-{Guid.NewGuid():N}" };
        using (var call = Client.ModelStreamInfer(deadline: DateTime.UtcNow.AddSeconds(30)))
        {
            await call.RequestStream.WriteAsync(InSequence("o1", sequence, start: true));
            await call.RequestStream.CompleteAsync();
            var answers = new List<ModelStreamInferResponse>();
            await foreach (var answer in call.ResponseStream.ReadAllAsync())
            {
                answers.Add(answer);
            }

            Assert.Empty(Assert.Single(answers).ErrorMessage);
        }

        // The stream's end frees the sequence soon after its last answer: a later chunk of it is of no sequence.
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        RpcException? failure = null;
        while (failure is null)
        {
            deadline.Token.ThrowIfCancellationRequested();
            try
            {
                await Client.ModelInferAsync(InSequence("o2", sequence, start: false), cancellationToken: deadline.Token).ResponseAsync;
            }
            catch (RpcException ex) when (ex.StatusCode != StatusCode.Cancelled)
            {
                failure = ex;
            }
        }

        Assert.Equal((StatusCode.NotFound, "unknown_sequence"), (failure.StatusCode, failure.Trailers.GetValue("streaminfer-code")));
    }

    private static ModelInferRequest InSequence(string id, InferParameter sequenceId, bool start, bool end = false)
    {
        // A chunk of the stateful test model's: sequences are for models that keep state.
        var request = new ModelInferRequest { ModelName = "vad", Id = id };
        request.Inputs.Add(Input("input", "FP32", 1, 2));
        request.RawInputContents.Add(Floats(1, 2));
        request.Inputs.Add(Input("sr", "INT64"));
        request.RawInputContents.Add(Longs(16000));
        request.Parameters["sequence_id"] = sequenceId;
        request.Parameters["sequence_start"] = new InferParameter { BoolParam = start };
        request.Parameters["sequence_end"] = new InferParameter { BoolParam = end };
        return request;
    }
}
