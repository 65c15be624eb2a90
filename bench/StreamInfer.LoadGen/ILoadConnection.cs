namespace StreamInfer.LoadGen;

/// <summary>One client of the run: a WebSocket connection (<see cref="Connection"/>) or an HTTP client (<see cref="HttpConnection"/>).</summary>
internal interface ILoadConnection : IDisposable
{
    ConnectionStats Stats { get; }

    /// <summary>Requests sent, warm-up included.</summary>
    long Sent { get; }

    /// <summary>Completes when every slot has stopped.</summary>
    Task Slots { get; }

    Task ConnectAsync(Uri url, TimeSpan timeout);

    /// <summary>Starts sending; requests sent in [<paramref name="measureStart"/>, <paramref name="measureEnd"/>) are measured.</summary>
    void Start(long measureStart, long measureEnd);

    /// <summary>Lets slots whose request has waited longer than <paramref name="timeout"/> move on.</summary>
    void ExpireOverdue(long now, TimeSpan timeout);

    /// <summary>Gives up on what is still in flight; how many there were.</summary>
    int Abandon();

    Task CloseAsync();
}
