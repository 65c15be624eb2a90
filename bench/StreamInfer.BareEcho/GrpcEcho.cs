using Grpc.Core;
using StreamInfer.Frontend.Grpc.V2;

namespace StreamInfer.BareEcho;

/// <summary>
/// <c>inference.GRPCInferenceService</c> as the echo model answers it: each input back as an output of the same name,
/// datatype and shape, with the same typed <c>contents</c> or the same <c>raw_input_contents</c> bytes (shared, not copied).
/// </summary>
internal sealed class GrpcEcho : GRPCInferenceService.GRPCInferenceServiceBase
{
    public override Task<ServerLiveResponse> ServerLive(ServerLiveRequest request, ServerCallContext context)
        => Task.FromResult(new ServerLiveResponse { Live = true });

    public override Task<ModelInferResponse> ModelInfer(ModelInferRequest request, ServerCallContext context)
        => Task.FromResult(Answer(request));

    public override async Task ModelStreamInfer(IAsyncStreamReader<ModelInferRequest> requestStream, IServerStreamWriter<ModelStreamInferResponse> responseStream, ServerCallContext context)
    {
        await foreach (var request in requestStream.ReadAllAsync(context.CancellationToken))
        {
            await responseStream.WriteAsync(new ModelStreamInferResponse { InferResponse = Answer(request) });
        }
    }

    private static ModelInferResponse Answer(ModelInferRequest request)
    {
        var response = new ModelInferResponse { ModelName = request.ModelName, ModelVersion = "1", Id = request.Id };
        foreach (var input in request.Inputs)
        {
            var output = new ModelInferResponse.Types.InferOutputTensor { Name = input.Name, Datatype = input.Datatype, Contents = input.Contents };
            output.Shape.AddRange(input.Shape);
            response.Outputs.Add(output);
        }

        response.RawOutputContents.AddRange(request.RawInputContents);
        return response;
    }
}
