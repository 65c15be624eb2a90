namespace StreamInfer.Frontend.Http;

/// <summary>
/// What a client is told when a call into the cluster fails: a stable message in the protocol's codes, never the
/// exception's text (which names silos, grains and internals); the log gets the exception.
/// </summary>
internal static partial class GrainCallErrors
{
    /// <summary>The error for <paramref name="ex"/>, thrown by a call that was doing <paramref name="what"/> (e.g.
    /// "the rollout"), logged once here.</summary>
    public static InferError For(ILogger logger, Exception ex, string what)
    {
        LogFailed(logger, ex, what);
        return ex switch
        {
            TimeoutException => new InferError(ErrorCode.DeadlineExceeded, $"{what} did not answer in time; it may still be under way in the cluster."),
            OrleansException => new InferError(ErrorCode.ModelUnavailable, $"{what} could not reach the cluster; try again.", 1000),
            _ => new InferError(ErrorCode.Internal, $"{what} failed: an internal error (the server's log has the details)."),
        };
    }

    /// <summary>
    /// Runs an endpoint's cluster calls; a failure answers <see cref="For"/>'s error in the <c>/predict</c> shape, unless
    /// the caller left or the answer has already started.
    /// </summary>
    public static async Task GuardAsync(HttpContext context, ILogger logger, string what, Func<Task> handle)
    {
        try
        {
            await handle();
        }
        catch (Exception ex) when (!context.RequestAborted.IsCancellationRequested && !context.Response.HasStarted)
        {
            await HttpErrors.WriteAsync(context, For(logger, ex, what));
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "A cluster call failed: {What}")]
    private static partial void LogFailed(ILogger logger, Exception ex, string what);
}
