namespace StreamInfer.Frontend.Requests;

/// <summary>What a client is told when the call that admits its request fails (rather than refuses).</summary>
internal static class AdmissionFailure
{
    /// <summary>Retry hint while a silo is being declared dead (ProbeTimeout x MissedProbesLimit is about 2-3 s).</summary>
    private const int SiloLossRetryMs = 1000;

    /// <summary>Retry hint once a silo has been declared dead: membership already sends new calls to the silos left.</summary>
    public const int SiloLostRetryMs = 100;

    /// <summary>
    /// <c>model_unavailable</c> with <c>retry_after_ms</c> when the cause is a silo that cannot be reached (it died and
    /// membership has not said so yet: a retry shortly goes to the silos left); <c>internal</c> otherwise.
    /// </summary>
    public static InferError From(Exception ex) => ex is SiloUnavailableException or OrleansMessageRejectionException
        ? new InferError(ErrorCode.ModelUnavailable, "a silo of the grid is unreachable; retry shortly.", SiloLossRetryMs)
        : new InferError(ErrorCode.Internal, "the request could not be admitted; try again.");
}
