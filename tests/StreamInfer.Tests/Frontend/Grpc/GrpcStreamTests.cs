using Google.Protobuf;
using Grpc.Core;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.Grpc.GrpcTestTensors;

namespace StreamInfer.Tests.Frontend.Grpc;

/// <summary>
/// Triton's <c>ModelStreamInfer</c> over a real h2c channel: many requests on one stream answered as they finish, a
/// failed request answered on the stream while it goes on serving, a decoder streaming one answer per token, and a
/// client that goes away cancelling what it had in flight.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class GrpcStreamTests(FrontendFixture fixture) : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private readonly global::Grpc.Net.Client.GrpcChannel _channel = Channel(fixture.GrpcUri);

    private GRPCInferenceService.GRPCInferenceServiceClient Client => new(_channel);

    public void Dispose() => _channel.Dispose();

    [Fact]
    public async Task ModelStreamInfer_SeveralRequestsAndFailures_EachAnsweredByIdAndStreamServes()
    {
        using var call = Client.ModelStreamInfer(deadline: DateTime.UtcNow + Patience);
        for (var i = 0; i < 5; i++)
        {
            await call.RequestStream.WriteAsync(GrpcInferenceTests.RawF32Echo($"s{i}"));
        }

        var bad = new ModelInferRequest { ModelName = "multi", Id = "bad" };
        bad.Inputs.Add(Input("f32", "FP32", 1, 3));
        bad.RawInputContents.Add(ByteString.CopyFrom(new byte[11]));
        await call.RequestStream.WriteAsync(bad);
        var gone = GrpcInferenceTests.RawF32Echo("gone");
        gone.ModelName = "no-such-model";
        await call.RequestStream.WriteAsync(gone);
        await call.RequestStream.WriteAsync(GrpcInferenceTests.RawF32Echo("s5"));
        await call.RequestStream.CompleteAsync();

        var answers = await ReadAllAsync(call);

        Assert.Equal(8, answers.Count);
        var results = answers.Where(a => a.ErrorMessage.Length == 0).ToDictionary(a => a.InferResponse.Id);
        Assert.Equal(["s0", "s1", "s2", "s3", "s4", "s5"], results.Keys.Order());
        Assert.All(results.Values, a => Assert.Equal([1d, 2d, 3d], Values(a.InferResponse, "y")));
        var errors = answers.Where(a => a.ErrorMessage.Length > 0).ToDictionary(a => a.InferResponse.Id);
        Assert.Equal("invalid_input", errors["bad"].InferResponse.Parameters["streaminfer_code"].StringParam);
        Assert.Contains("f32", errors["bad"].ErrorMessage, StringComparison.Ordinal);
        Assert.Equal("unknown_model", errors["gone"].InferResponse.Parameters["streaminfer_code"].StringParam);
        Assert.Equal("no-such-model", errors["gone"].InferResponse.ModelName);
        // As Triton's stream: every request's one answer is also its last, results and errors alike.
        Assert.All(answers, a => Assert.True(a.InferResponse.Parameters["triton_final_response"].BoolParam));
    }

    [Fact]
    public async Task ModelStreamInfer_AnswerLargerThanSendQueueBytes_DeliveredAndStreamServes()
    {
        // A request at the binary limit: its echo, with the answer's own fields, is larger than the whole send budget.
        var big = GrpcInferenceTests.RawF32Echo("big");
        big.ModelName = "echo-bulk";
        var floats = (FrontendFixture.MaxBinaryBytes - big.CalculateSize()) / 4;
        while (true)
        {
            big.Inputs[0].Shape[0] = floats;
            big.RawInputContents[0] = ByteString.CopyFrom(new byte[floats * 4]);
            if (big.CalculateSize() <= FrontendFixture.MaxBinaryBytes)
            {
                break;
            }

            floats--;
        }

        using var call = Client.ModelStreamInfer(deadline: DateTime.UtcNow + Patience);
        await call.RequestStream.WriteAsync(big);
        Assert.True(await call.ResponseStream.MoveNext());
        var answer = call.ResponseStream.Current;
        await call.RequestStream.WriteAsync(GrpcInferenceTests.RawF32Echo("after"));
        await call.RequestStream.CompleteAsync();
        var rest = await ReadAllAsync(call);

        Assert.Empty(answer.ErrorMessage);
        Assert.True(answer.CalculateSize() > FrontendFixture.SendQueueBytes, $"the answer is {answer.CalculateSize()} bytes");
        Assert.Equal(floats * 4, answer.InferResponse.RawOutputContents[0].Length);
        Assert.Equal("after", Assert.Single(rest).InferResponse.Id);
    }

    [Fact]
    public async Task ModelStreamInfer_ClientNeverReadsLargeAnswers_CutOffPastSendQueueBytes()
    {
        using var call = Client.ModelStreamInfer(deadline: DateTime.UtcNow + Patience);
        var sent = 0;
        async Task<bool> CutAsync()
        {
            // Never read: each echo of a quarter of the send budget waits on the HTTP/2 window the client never opens.
            var request = GrpcInferenceTests.RawF32Echo($"big{sent++}");
            request.ModelName = "echo-bulk";
            request.Inputs[0].Shape[0] = FrontendFixture.SendQueueBytes / 16;
            request.RawInputContents[0] = ByteString.CopyFrom(new byte[FrontendFixture.SendQueueBytes / 4]);
            try
            {
                await call.RequestStream.WriteAsync(request);
                return false;
            }
            catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException)
            {
                return true;
            }
        }

        await Eventually.UntilAsync(CutAsync, cut => cut, what: "the stream is cut");

        Assert.InRange(sent, 5, 64);
        await Assert.ThrowsAsync<RpcException>(() => ReadAllAsync(call));
    }

    [Fact]
    public async Task ModelStreamInfer_SlowThenFast_AnsweredAsTheyFinish()
    {
        // Another test may have left slow-grpc busy: a request queued behind it could be refused at once, and its
        // error would come first.
        await Eventually.UntilAsync(() => fixture.Batcher("slow-grpc").GetStatusAsync(), s => s is { Running: 0, Queued: 0 }, what: "slow-grpc idle");
        using var call = Client.ModelStreamInfer(deadline: DateTime.UtcNow + Patience);
        var slow = GrpcInferenceTests.RawF32Echo("slow");
        slow.ModelName = "slow-grpc";
        await call.RequestStream.WriteAsync(slow);
        await call.RequestStream.WriteAsync(GrpcInferenceTests.RawF32Echo("fast"));
        await call.RequestStream.CompleteAsync();

        var answers = await ReadAllAsync(call);

        Assert.All(answers, a => Assert.Empty(a.ErrorMessage));
        Assert.Equal(["fast", "slow"], answers.Select(a => a.InferResponse.Id));
        Assert.All(answers, a => Assert.True(a.InferResponse.Parameters["triton_final_response"].BoolParam));
    }

    [Fact]
    public async Task ModelStreamInfer_Decoder_OneAnswerPerTokenThenFinalAsTheUnaryText()
    {
        var unary = await Client.ModelInferAsync(Prompt("u", "prompt", raw: false), deadline: DateTime.UtcNow + Patience);
        using var call = Client.ModelStreamInfer(deadline: DateTime.UtcNow + Patience);
        await call.RequestStream.WriteAsync(Prompt("g1", "text_input", raw: true));
        await call.RequestStream.CompleteAsync();

        var answers = await ReadAllAsync(call);

        Assert.All(answers, a => Assert.Empty(a.ErrorMessage));
        Assert.All(answers, a => Assert.Equal("g1", a.InferResponse.Id));
        Assert.All(answers, a => Assert.Equal(["text_output"], a.InferResponse.Outputs.Select(o => o.Name)));
        Assert.True(answers.Count >= 3, $"expected tokens then a final answer; got {answers.Count} answers");
        Assert.All(answers[..^1], a => Assert.False(a.InferResponse.Parameters["triton_final_response"].BoolParam));
        var final = answers[^1].InferResponse;
        Assert.True(final.Parameters["triton_final_response"].BoolParam);
        Assert.Equal(8, final.Parameters["completion_tokens"].Int64Param);
        Assert.Equal("length", final.Parameters["finish_reason"].StringParam);
        var streamed = string.Concat(answers.Select(a => (string)Values(a.InferResponse, "text_output").Single()));

        Assert.Equal(["text"], unary.Outputs.Select(o => o.Name));
        Assert.True(unary.Parameters["triton_final_response"].BoolParam);
        Assert.Equal((string)Values(unary, "text").Single(), streamed);
        Assert.False(string.IsNullOrEmpty(streamed));
    }

    [Fact]
    public async Task ModelStreamInfer_ClientGoesAway_ItsRequestsCancelledInTheGrid()
    {
        var clientId = "grpc-" + Guid.NewGuid().ToString("N");
        var session = fixture.Client.GetGrain<IClientSessionGrain>("http-" + clientId);
        var queuedBefore = (await fixture.Batcher("hold").GetStatusAsync()).Queued;
        var call = Client.ModelStreamInfer(new Metadata { { "x-client-id", clientId } }, DateTime.UtcNow + Patience);
        for (var i = 0; i < 3; i++)
        {
            var held = GrpcInferenceTests.RawF32Echo($"h{i}");
            held.ModelName = "hold";
            await call.RequestStream.WriteAsync(held);
        }

        await Eventually.UntilAsync(() => session.GetStatusAsync(), s => s.Backlog == 3, what: "three requests admitted");

        call.Dispose();

        await Eventually.UntilAsync(() => fixture.Batcher("hold").GetStatusAsync(), s => s.Queued == queuedBefore, what: "the batcher drops the requests");
        await Eventually.UntilAsync(() => session.GetStatusAsync(), s => s.Backlog == 0, what: "the backlog is released");
    }

    private static ModelInferRequest Prompt(string id, string input, bool raw)
    {
        var request = new ModelInferRequest { ModelName = "tiny-lm", Id = id };
        var tensor = Input(input, "BYTES", 1);
        if (raw)
        {
            request.RawInputContents.Add(Strings("Once upon"));
        }
        else
        {
            tensor.Contents = new InferTensorContents();
            tensor.Contents.BytesContents.Add(ByteString.CopyFromUtf8("Once upon"));
        }

        request.Inputs.Add(tensor);
        request.Parameters.Add("max_tokens", new InferParameter { Int64Param = 8 });
        return request;
    }

    private static async Task<List<ModelStreamInferResponse>> ReadAllAsync(AsyncDuplexStreamingCall<ModelInferRequest, ModelStreamInferResponse> call)
    {
        var answers = new List<ModelStreamInferResponse>();
        await foreach (var answer in call.ResponseStream.ReadAllAsync())
        {
            answers.Add(answer);
        }

        return answers;
    }
}
