using System.Buffers;
using Google.Protobuf;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Requests;

namespace StreamInfer.Frontend.Grpc;

/// <summary>
/// Answers as <see cref="ModelInferResponse"/>: a request that came raw is answered raw (<c>raw_output_contents</c>,
/// numeric outputs straight from the result's buffers), a typed one typed (<c>contents</c>), unless an output has no
/// typed field (FP16): then the whole answer is raw, since one answer cannot mix the two. A decoder's text is one BYTES
/// element; the answer that ends a generation carries <c>triton_final_response</c> true, the finish reason and usage (on
/// a stream every request's last answer carries it: <see cref="Final"/>).
/// </summary>
internal static class GrpcResponses
{
    /// <summary>Triton's flag on a decoupled model's answers: true on the last one of a request.</summary>
    public const string FinalParameter = "triton_final_response";

    /// <summary>The answer to <paramref name="request"/> for how it ended, or the error that answers instead.</summary>
    public static (ModelInferResponse? Response, InferError? Error) From(GrpcRequest request, RequestOutcome outcome) => outcome switch
    {
        { Result: { } result } => Result(request, result),
        { Done: { } done } => Done(request, done),
        _ => (null, outcome.Error ?? new InferError(ErrorCode.Internal, "the request ended without an answer.")),
    };

    /// <summary>Marks <paramref name="response"/> as its request's last answer on a stream, unless it says already.</summary>
    public static ModelInferResponse Final(ModelInferResponse response)
    {
        response.Parameters.TryAdd(FinalParameter, new InferParameter { BoolParam = true });
        return response;
    }

    /// <summary>One token of a streaming generation (not the last answer).</summary>
    public static ModelInferResponse Token(GrpcRequest request, string? modelVersion, string text)
    {
        var response = Text(request, modelVersion ?? string.Empty, text);
        response.Parameters.Add(FinalParameter, new InferParameter { BoolParam = false });
        return response;
    }

    private static (ModelInferResponse?, InferError?) Result(GrpcRequest request, InferResult result)
    {
        if (request.Version is { } pinned && pinned != result.ModelVersion)
        {
            return (null, new InferError(ErrorCode.UnknownModel, $"model '{request.Model}' serves version {result.ModelVersion}, not {pinned}."));
        }

        var outputs = result.Outputs;
        if (request.Outputs is { } requested)
        {
            if (requested.FirstOrDefault(r => !outputs.Any(o => o.Name == r)) is { } absent)
            {
                return (null, new InferError(ErrorCode.InvalidInput, $"model '{request.Model}' has no output '{absent}' (it has {string.Join(", ", outputs.Select(o => o.Name))})."));
            }

            outputs = [.. outputs.Where(o => requested.Contains(o.Name))];
        }

        var raw = request.Raw || outputs.Any(o => !TypedContents.HasField(o.Tensor.ElementType));
        var response = new ModelInferResponse { ModelName = result.Model, ModelVersion = result.ModelVersion, Id = request.Id };
        foreach (var output in outputs)
        {
            var tensor = new ModelInferResponse.Types.InferOutputTensor { Name = output.Name, Datatype = output.Tensor.ElementType.ToKServe() };
            tensor.Shape.AddRange(output.Tensor.Shape);
            if (raw)
            {
                response.RawOutputContents.Add(Raw(output.Tensor));
            }
            else
            {
                tensor.Contents = TypedContents.Write(output.Tensor);
            }

            response.Outputs.Add(tensor);
        }

        response.Parameters.Add("queue_ms", new InferParameter { DoubleParam = result.Timing.QueueMs });
        response.Parameters.Add("compute_ms", new InferParameter { DoubleParam = result.Timing.ComputeMs });
        response.Parameters.Add("batch_size", new InferParameter { Int64Param = result.Timing.BatchSize });
        if (result.Window is { } window)
        {
            AddWindow(response, window);
        }

        return (response, null);
    }

    private static (ModelInferResponse?, InferError?) Done(GrpcRequest request, GenerationDone done)
    {
        if (request.Version is { } pinned && pinned != done.ModelVersion)
        {
            return (null, new InferError(ErrorCode.UnknownModel, $"model '{request.Model}' serves version {done.ModelVersion}, not {pinned}."));
        }

        var response = Text(request, done.ModelVersion, done.Text);
        response.Parameters.Add(FinalParameter, new InferParameter { BoolParam = true });
        response.Parameters.Add("finish_reason", new InferParameter { StringParam = done.FinishReason });
        response.Parameters.Add("prompt_tokens", new InferParameter { Int64Param = done.PromptTokens });
        response.Parameters.Add("completion_tokens", new InferParameter { Int64Param = done.CompletionTokens });
        return (response, null);
    }

    /// <summary>The window of the request's sequence, as parameters (<see cref="WindowParameters"/>).</summary>
    private static void AddWindow(ModelInferResponse response, SequenceWindow window)
    {
        response.Parameters.Add(WindowParameters.Output, new InferParameter { StringParam = window.Output });
        response.Parameters.Add(WindowParameters.Index, new InferParameter { Int64Param = window.Index });
        response.Parameters.Add(WindowParameters.Count, new InferParameter { Int64Param = window.Count });
        response.Parameters.Add(WindowParameters.Mean, new InferParameter { DoubleParam = window.Mean });
        response.Parameters.Add(WindowParameters.Max, new InferParameter { DoubleParam = window.Max });
        if (window.Event is { } raised)
        {
            response.Parameters.Add(WindowParameters.Event, new InferParameter { StringParam = raised });
        }
    }

    /// <summary>An answer holding one BYTES element of text, in the request's form (raw or typed).</summary>
    private static ModelInferResponse Text(GrpcRequest request, string modelVersion, string text)
    {
        var response = new ModelInferResponse { ModelName = request.Model, ModelVersion = modelVersion, Id = request.Id };
        var tensor = new Tensor(TensorElementType.String, [1], ReadOnlyMemory<byte>.Empty, [text]);
        var output = new ModelInferResponse.Types.InferOutputTensor { Name = request.TextOutputName, Datatype = tensor.ElementType.ToKServe() };
        output.Shape.Add(1);
        if (request.Raw)
        {
            response.RawOutputContents.Add(Raw(tensor));
        }
        else
        {
            output.Contents = TypedContents.Write(tensor);
        }

        response.Outputs.Add(output);
        return response;
    }

    /// <summary>A tensor's raw bytes: numeric data wrapped as it is (the result is not changed once delivered).</summary>
    private static ByteString Raw(Tensor tensor)
    {
        if (tensor.ElementType != TensorElementType.String)
        {
            return UnsafeByteOperations.UnsafeWrap(tensor.Data);
        }

        var buffer = new ArrayBufferWriter<byte>((int)Math.Clamp(tensor.RawByteSize(), 1, int.MaxValue));
        RawTensors.Write(tensor, buffer);
        return UnsafeByteOperations.UnsafeWrap(buffer.WrittenMemory);
    }
}
