namespace StreamInfer.Frontend.Auth;

/// <summary>
/// Whom a request comes from, as the frontend established it before reading the request: a client named by its API key,
/// or (without keys) an anonymous caller named by its address or a trusted proxy's <c>X-Client-Id</c>.
/// </summary>
/// <param name="Name">The client's name: the key's identity, or the caller's address or client id.</param>
/// <param name="Keyed">Whether an API key named the client: then all its connections and calls share one session.</param>
/// <param name="Limits">What the session applies for the client (null: the session's defaults).</param>
/// <param name="Models">The models the client may use; null for all.</param>
/// <param name="MaxConnections">WebSocket connections and gRPC streams the client may hold on this frontend; null for no cap of its own.</param>
internal sealed record ClientIdentity(string Name, bool Keyed, ClientLimits? Limits, IReadOnlySet<string>? Models, int? MaxConnections)
{
    /// <summary>The session of the client's HTTP calls (and, with a key, of its connections too).</summary>
    public string Session { get; } = (Keyed ? "key-" : "http-") + Name;

    /// <summary>The session of one WebSocket connection: the key's, or (anonymous) one of the connection's own.</summary>
    public string ConnectionSession() => Keyed ? Session : $"ws-{Guid.NewGuid():N}";

    /// <summary>The refusal of a request for <paramref name="model"/> when the client may not use it, or null. A model
    /// the key does not list is answered as one that does not exist: its existence is not the client's to learn.</summary>
    public InferError? Refuse(string model) => Models is null || Models.Contains(model) ? null : UnknownModel(model);

    /// <summary>The <c>unknown_model</c> answer for this client: only the models it may use are named.</summary>
    public InferError UnknownModel(string model) => new(ErrorCode.UnknownModel, Models is null
        ? $"no model named '{model}' is served."
        : $"no model named '{model}' is served (served to this key: {string.Join(", ", Models.Order(StringComparer.Ordinal))}).");
}
