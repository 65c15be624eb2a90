using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Requests;

namespace StreamInfer.Frontend.Http;

/// <summary>Takes the tokens of an HTTP request that streams them; called under the request's lock, so must not block.</summary>
internal interface ITokenSink
{
    void Write(GeneratedToken token, DateTimeOffset producedAt);

    /// <summary>The request ended: no token follows.</summary>
    void Complete();
}

/// <summary>
/// One request over HTTP: submitted for its caller (its session is the API key's, <c>key-</c> + its identity; without
/// keys <c>http-</c> + a trusted proxy's <c>X-Client-Id</c>, or else the caller's address) under a fresh grid id, and answered once its end arrives. A caller that hangs up abandons it (cancelled at
/// its session; nothing is written).
/// </summary>
internal sealed class HttpCall : IRequestListener
{
    private readonly TaskCompletionSource<RequestOutcome> _end = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly HttpContext _context;
    private readonly RequestSubmitter _submitter;
    private readonly ClientFrame.Infer _infer;
    private readonly ITokenSink? _tokens;
    private readonly InFlightRequest _request;
    private readonly ClientIdentity _client;

    private HttpCall(HttpContext context, RequestSubmitter submitter, ClientFrame.Infer infer, ITokenSink? tokens)
    {
        _context = context;
        _submitter = submitter;
        _infer = infer;
        _tokens = tokens;
        var gridId = Guid.NewGuid().ToString("N");
        _client = ClientAuth.Client(context);
        _request = submitter.Begin(_client.Session, gridId, infer.Id.Length > 0 ? infer.Id : gridId, infer, streams: tokens is not null, this);
    }

    /// <summary>The id the answer carries: the caller's, or else the grid's.</summary>
    public string Id => _request.Id;

    /// <summary>Starts a request; <paramref name="tokens"/>, when given, takes a text request's tokens as they come
    /// (without it they are gathered into the end's text).</summary>
    public static HttpCall Start(HttpContext context, RequestSubmitter submitter, ClientFrame.Infer infer, ITokenSink? tokens = null)
        => new(context, submitter, infer, tokens);

    /// <summary>Admits the request; false when it was refused (its end, with the refusal, is then ready).</summary>
    public Task<bool> AdmitAsync() => _submitter.SubmitAsync(_request, _infer, _client);

    /// <summary>Waits for the request's end, or abandons it when the caller hangs up.</summary>
    public async Task<RequestOutcome> EndAsync()
    {
        try
        {
            return await _end.Task.WaitAsync(_context.RequestAborted);
        }
        catch (OperationCanceledException)
        {
            Abandon();
            return RequestOutcome.Gone;
        }
    }

    /// <summary>The caller is gone (or cut off): the request ends unanswered and is cancelled at its session.</summary>
    public void Abandon() => _submitter.Abandon(_request);

    /// <summary>Admits the request and waits for its end.</summary>
    public async Task<RequestOutcome> RunAsync()
    {
        await AdmitAsync();
        return await EndAsync();
    }

    void IRequestListener.OnWarning(InFlightRequest request, BacklogWarning warning)
    {
        // HTTP has no channel for warnings; a full backlog refuses the next request with a status.
    }

    void IRequestListener.OnToken(InFlightRequest request, GeneratedToken token, DateTimeOffset producedAt) => _tokens?.Write(token, producedAt);

    void IRequestListener.OnEnd(InFlightRequest request, RequestOutcome outcome, DateTimeOffset producedAt)
    {
        _tokens?.Complete();
        _end.TrySetResult(outcome);
    }
}
