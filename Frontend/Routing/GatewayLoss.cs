namespace StreamInfer.Frontend.Routing;

/// <summary>
/// Tells when this frontend's connection to one of the cluster's gateways closed (a client frontend only; a co-hosted
/// silo has none). A call that went out through that gateway and has not been answered may never be: the gateway may
/// have died holding it, and Orleans ends such a call only when membership declares the silo dead, seconds later
/// (docs/decisions.md D22).
/// </summary>
internal sealed partial class GatewayLoss(ILogger<GatewayLoss> logger) : IClusterConnectionStatusObserver
{
    private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes at the next gateway connection that closes after it was read.</summary>
    public Task Next => Volatile.Read(ref _next).Task;

    public void NotifyGatewayCountChanged(int currentNumberOfGateways, int previousNumberOfGateways, bool connectionRecovered)
    {
        if (currentNumberOfGateways < previousNumberOfGateways)
        {
            LogLost(logger, currentNumberOfGateways);
            Signal();
        }
    }

    // The last gateway's close is also counted down to zero, which signals: once per close.
    public void NotifyClusterConnectionLost()
    {
    }

    /// <summary>A gateway connection closed: whoever waits on <see cref="Next"/> hears it; later readers wait for the next.</summary>
    public void Signal()
        => Interlocked.Exchange(ref _next, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    [LoggerMessage(Level = LogLevel.Warning, Message = "A gateway connection closed ({Gateways} left): admissions not yet answered are sent again")]
    private static partial void LogLost(ILogger logger, int gateways);
}
