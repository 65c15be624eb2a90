namespace StreamInfer.Frontend.Requests;

/// <summary>The transport side of a request: what its connection or HTTP exchange writes as the request moves on.</summary>
internal interface IRequestListener
{
    /// <summary>The admission warned that the client's backlog is filling up; before the request's end if it was refused.</summary>
    void OnWarning(InFlightRequest request, BacklogWarning warning);

    /// <summary>A new token of a request that streams, under the request's lock and in index order. Must not block.</summary>
    void OnToken(InFlightRequest request, GeneratedToken token, DateTimeOffset producedAt);

    /// <summary>
    /// The request's end, exactly once, under the request's lock (no token follows it). Must not block.
    /// <paramref name="producedAt"/>: when the grid produced it, or default when the frontend ended it.
    /// </summary>
    void OnEnd(InFlightRequest request, RequestOutcome outcome, DateTimeOffset producedAt);
}
