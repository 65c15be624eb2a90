using System.Collections.Concurrent;

namespace StreamInfer.Frontend.Requests;

/// <summary>This frontend's requests in flight, of every API, by their name in the grid; what the grid delivers is
/// handed to the request it names.</summary>
internal sealed class RequestTable
{
    private readonly ConcurrentDictionary<RequestKey, InFlightRequest> _requests = new();

    /// <summary>Requests not yet ended.</summary>
    public int Count => _requests.Count;

    /// <summary>Adds a request; its <see cref="RequestKey.Request"/> must be unique within its session.</summary>
    public InFlightRequest Add(RequestKey key, string id, bool isText, bool streams, long submittedAt, long watchdogAt, IRequestListener listener)
    {
        var request = new InFlightRequest(this, key, id, isText, streams, submittedAt, watchdogAt, listener);
        if (!_requests.TryAdd(key, request))
        {
            throw new InvalidOperationException($"request '{key.Request}' of session '{key.Session}' is in flight already.");
        }

        return request;
    }

    /// <summary>Hands one delivery (a token, an end, or both) to its request, if it is still in flight.</summary>
    public void Deliver(Delivery delivery, DateTimeOffset producedAt)
    {
        if (!_requests.TryGetValue(new RequestKey(delivery.ClientId, delivery.RequestId), out var request))
        {
            return;
        }

        if (delivery.Token is { } token)
        {
            request.TryToken(token, producedAt);
        }

        if (delivery.IsEnd)
        {
            request.TryEnd(RequestOutcome.From(delivery), producedAt);
        }
    }

    /// <summary>The requests in flight now.</summary>
    public IEnumerable<InFlightRequest> All
    {
        get
        {
            foreach (var (_, request) in _requests)
            {
                yield return request;
            }
        }
    }

    internal void Remove(InFlightRequest request) => _requests.TryRemove(KeyValuePair.Create(request.Key, request));
}
