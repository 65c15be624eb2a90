using Grpc.Core;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.Operations;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Requests;

namespace StreamInfer.Frontend.Grpc;

/// <summary>A request ready for the grid: as read, as the grid takes it, and the serving version when it was looked up.</summary>
internal sealed record PreparedRequest(GrpcRequest Request, ClientFrame.Infer Infer, string? ServingVersion);

/// <summary>
/// KServe v2's <c>inference.GRPCInferenceService</c>: health, metadata, <c>ModelInfer</c> and Triton's
/// <c>ModelStreamInfer</c>. Inference goes through the caller's session (its API key's; without keys <c>http-</c> + a
/// trusted proxy's <c>x-client-id</c> metadata, or its address, as over HTTP) and the batchers like every other request; failures are the codes' gRPC statuses
/// (<see cref="GrpcErrors"/>).
/// </summary>
internal sealed class InferenceService(
    RequestSubmitter submitter,
    IClusterClient client,
    FrontendDrain drain,
    ConnectionsPerAddress addresses,
    IOptions<FrontendOptions> options,
    TimeProvider time,
    ILogger<InferenceService> logger) : GRPCInferenceService.GRPCInferenceServiceBase
{
    internal RequestSubmitter Submitter => submitter;

    internal FrontendOptions Options => options.Value;

    internal ILogger Logger => logger;

    public override Task<ServerLiveResponse> ServerLive(ServerLiveRequest request, ServerCallContext context)
        => Task.FromResult(new ServerLiveResponse { Live = true });

    public override async Task<ServerReadyResponse> ServerReady(ServerReadyRequest request, ServerCallContext context)
    {
        try
        {
            var status = await client.GetGrain<IModelInfoGrain>(0).GetRepositoryAsync().WaitAsync(TimeSpan.FromSeconds(5), context.CancellationToken);
            return new ServerReadyResponse { Ready = HealthEndpoints.IsReady(status, drain.IsDraining) };
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !context.CancellationToken.IsCancellationRequested)
        {
            // No silo answers (a cluster frontend before its silos, or while they move): not ready.
            return new ServerReadyResponse { Ready = false };
        }
    }

    /// <summary>The server's metadata, as <c>GET /v2</c> gives it: extensions are the server's, whichever protocol
    /// serves them (raw tensors are core in gRPC; the binary extension is HTTP's).</summary>
    public override Task<ServerMetadataResponse> ServerMetadata(ServerMetadataRequest request, ServerCallContext context)
    {
        var metadata = new ServerMetadataResponse { Name = "streaminfer", Version = typeof(InferenceService).Assembly.GetName().Version?.ToString() ?? string.Empty };
        metadata.Extensions.AddRange(KServe.KServeEndpoints.Extensions);
        return Task.FromResult(metadata);
    }

    public override async Task<ModelReadyResponse> ModelReady(ModelReadyRequest request, ServerCallContext context)
    {
        var model = await FindAsync(request.Name, request.Version, context);
        return new ModelReadyResponse { Ready = model.State == ModelState.Ready };
    }

    public override async Task<ModelMetadataResponse> ModelMetadata(ModelMetadataRequest request, ServerCallContext context)
    {
        var model = await FindAsync(request.Name, request.Version, context);
        if (model.State == ModelState.Failed)
        {
            throw GrpcErrors.Exception(new InferError(ErrorCode.ModelUnavailable, ModelLoadError.ForClients(model.Name, model.Errors)));
        }

        var response = new ModelMetadataResponse { Name = model.Name, Platform = model.Kind == "tensor" ? "onnxruntime_onnx" : $"streaminfer_{model.Kind}" };
        response.Versions.Add(model.Version);
        response.Inputs.AddRange(model.Inputs.Select(Spec));
        response.Outputs.AddRange(model.Outputs.Select(Spec));
        return response;
    }

    public override async Task<ModelInferResponse> ModelInfer(ModelInferRequest request, ServerCallContext context)
    {
        var (prepared, error) = await PrepareAsync(request, context);
        if (error is not null)
        {
            throw GrpcErrors.Exception(error);
        }

        var outcome = await HttpCall.Start(context.GetHttpContext(), submitter, prepared!.Infer).RunAsync();
        if (outcome.Abandoned)
        {
            throw new RpcException(new Status(StatusCode.Cancelled, "the call was cancelled."));
        }

        var (response, failure) = GrpcResponses.From(prepared.Request, outcome);
        return response ?? throw GrpcErrors.Exception(failure!);
    }

    public override async Task ModelStreamInfer(IAsyncStreamReader<ModelInferRequest> requestStream, IServerStreamWriter<ModelStreamInferResponse> responseStream, ServerCallContext context)
    {
        // A stream is held like a WebSocket: it counts against the frontend's connections and its address's.
        if (!drain.TryReserve())
        {
            throw GrpcErrors.Exception(drain.IsDraining
                ? new InferError(ErrorCode.ModelUnavailable, "this frontend is shutting down; connect to another.", 1000)
                : new InferError(ErrorCode.Overloaded, $"this frontend holds its maximum of {Options.MaxConnections} streams and connections; connect to another, or retry later.", 1000));
        }

        try
        {
            if (!addresses.TryTake(context.GetHttpContext().Connection.RemoteIpAddress, out var address))
            {
                throw GrpcErrors.Exception(new InferError(ErrorCode.RateLimited, $"this address holds its maximum of {addresses.LimitFor(address!)} streams and connections to this frontend; end one before opening another.", 1000));
            }

            try
            {
                await new InferStream(this, context, time).RunAsync(requestStream, responseStream);
            }
            finally
            {
                addresses.Release(address);
            }
        }
        finally
        {
            drain.Release();
        }
    }

    /// <summary>
    /// Reads and checks a request; the model is looked up only when the request names a version or has the form of a
    /// decoder's prompt (whether it is one depends on the model's kind), so tensor requests cost no extra call.
    /// </summary>
    internal async Task<(PreparedRequest? Request, InferError? Error)> PrepareAsync(ModelInferRequest message, ServerCallContext context)
    {
        if (drain.IsDraining)
        {
            return (null, RefuseWhileDraining.ShuttingDown);
        }

        var deadline = context.Deadline == DateTime.MaxValue ? (TimeSpan?)null : context.Deadline - time.GetUtcNow().UtcDateTime;
        var (request, error) = GrpcRequest.Read(message, deadline, Options.MaxFrameBytes);
        if (error is not null)
        {
            return (null, error);
        }

        if (request!.Version is null && request.PromptText is null)
        {
            return (new PreparedRequest(request, request.ToInfer(decoder: false), null), null);
        }

        var model = await client.GetGrain<IModelInfoGrain>(0).GetModelAsync(request.Model);
        if (Missing(model, request.Model, request.Version) is { } missing)
        {
            return (null, missing);
        }

        var decoder = model!.Kind == "decoder";
        if (decoder && request.Outputs?.FirstOrDefault(o => o != request.TextOutputName) is { } other)
        {
            return (null, new InferError(ErrorCode.InvalidInput, $"model '{request.Model}' has no output '{other}' (it answers '{request.TextOutputName}')."));
        }

        return (new PreparedRequest(request, request.ToInfer(decoder), model.Version), null);
    }

    private async Task<ModelInfo> FindAsync(string name, string version, ServerCallContext context)
    {
        if (ClientAuth.Client(context.GetHttpContext()).Refuse(name) is { } refusal)
        {
            throw GrpcErrors.Exception(refusal);
        }

        ModelInfo? model;
        try
        {
            model = await client.GetGrain<IModelInfoGrain>(0).GetModelAsync(name);
        }
        catch (Exception ex) when (!context.CancellationToken.IsCancellationRequested)
        {
            // As the HTTP lookups answer: the protocol's code and a stable message, the exception in the log.
            throw GrpcErrors.Exception(GrainCallErrors.For(logger, ex, "looking the model up"));
        }

        return Missing(model, name, version.Length > 0 ? version : null) is { } missing ? throw GrpcErrors.Exception(missing) : model!;
    }

    /// <summary>The error that answers for a model's absence (or for a version it does not serve), or null.</summary>
    private static InferError? Missing(ModelInfo? model, string name, string? version)
    {
        if (model is null)
        {
            return new InferError(ErrorCode.UnknownModel, $"no model named '{name}' is served.");
        }

        return version is not null && version != model.Version
            ? new InferError(ErrorCode.UnknownModel, $"model '{name}' serves version {model.Version}, not {version}.")
            : null;
    }

    private static ModelMetadataResponse.Types.TensorMetadata Spec(TensorSpec spec)
    {
        var metadata = new ModelMetadataResponse.Types.TensorMetadata { Name = spec.Name, Datatype = spec.ElementType.ToKServe() };
        metadata.Shape.AddRange(spec.Shape);
        return metadata;
    }
}
