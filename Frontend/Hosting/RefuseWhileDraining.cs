namespace StreamInfer.Frontend.Hosting;

/// <summary>While the frontend drains, new inference over HTTP is refused (503, retry elsewhere) in the API's own error
/// shape; health, metrics and operations still answer, and requests already in flight finish.</summary>
internal sealed class RefuseWhileDraining(FrontendDrain drain, Func<InferError, IResult> refuse) : IEndpointFilter
{
    internal static readonly InferError ShuttingDown = new(ErrorCode.ModelUnavailable, "this frontend is shutting down; send the request to another.", 1000);

    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        => drain.IsDraining ? ValueTask.FromResult<object?>(refuse(ShuttingDown)) : next(context);
}
