using Microsoft.Extensions.Options;

namespace StreamInfer.Frontend.Hosting;

/// <summary>Socket-side limits of a frontend. Section <c>StreamInfer:Frontend</c>.</summary>
public sealed class FrontendOptions
{
    public const string Section = "StreamInfer:Frontend";

    /// <summary>Largest JSON WebSocket message or JSON HTTP body accepted; larger ones get <c>payload_too_large</c>. Range: [1 KiB, 64 MiB]. Default 1 MiB.</summary>
    public int MaxFrameBytes { get; set; } = 1 << 20;

    /// <summary>
    /// Largest binary request accepted: a binary WebSocket message, a KServe v2 body with binary tensor data, a gRPC
    /// message. The frontend-wide ceiling: a model's own <c>max_request_bytes</c> may only lower it. Range: [1 KiB, 1 GiB].
    /// Default 32 MiB (a batch of eight 224×224 RGB images in FP32 is 4.8 MB).
    /// </summary>
    public int MaxBinaryBytes { get; set; } = 32 << 20;

    /// <summary>
    /// Request bytes one connection (a WebSocket, a gRPC stream) may hold in requests not yet ended: binary payloads stay
    /// in memory until their requests end. Past it the connection is not read until requests end (TCP flow control
    /// slows the client); a single request larger than it still passes when nothing else is held. Range:
    /// [<see cref="MaxBinaryBytes"/>, 16 GiB]. Default 128 MiB.
    /// </summary>
    public long MaxInFlightBytes { get; set; } = 128L << 20;

    /// <summary>
    /// Bytes queued for one WebSocket that the client has not read yet, beside <see cref="SendQueueCapacity"/> frames:
    /// whichever fills first, the slow-consumer rules apply (a warning at 80%, then the connection is closed).
    /// Range: [64 KiB, 4 GiB - 1]. Default 32 MiB.
    /// </summary>
    public long SendQueueBytes { get; set; } = 32L << 20;

    /// <summary>
    /// Where the KServe v2 gRPC service (<c>inference.GRPCInferenceService</c>) listens, HTTP/2 without TLS (h2c): its
    /// own port, since a cleartext port cannot serve HTTP/1.1 and HTTP/2 at once. Empty: no gRPC. Default empty in code;
    /// the shipped appsettings.json sets <c>http://127.0.0.1:8001</c> (Triton's gRPC port).
    /// </summary>
    public string? GrpcUrl { get; set; }

    /// <summary>
    /// Frames queued for one WebSocket that the client has not read yet. When full, the client is not reading: the
    /// connection is closed (1008) and its work cancelled, so memory stays flat. Range: [16, 1000000]. Default 4096.
    /// </summary>
    public int SendQueueCapacity { get; set; } = 4096;

    /// <summary>Requests of one connection being admitted at once; the receive loop waits beyond it. Range: [1, 10000]. Default 256.</summary>
    public int MaxConcurrentSubmits { get; set; } = 256;

    /// <summary>
    /// How long past its deadline the frontend waits for an answer before ending a request itself with
    /// <c>deadline_exceeded</c> (an answer lost with a silo). Range: [0, 10 min]. Default 5 s.
    /// </summary>
    public TimeSpan WatchdogGrace { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Whether this process also runs a silo (the embedded default: true). False: the frontend is an Orleans client of
    /// the cluster named by <c>StreamInfer:Orleans</c> (its <c>Redis</c> membership), holding sockets only.
    /// </summary>
    public bool CoHostSilo { get; set; } = true;

    /// <summary>
    /// The operators' key. Set, the dashboard (<c>/dashboard</c>) and the operations that change what serves
    /// (<c>POST /api/reload</c>, <c>POST /api/models/{name}/rollout|rollback</c>) need it: <c>Authorization: Bearer KEY</c>,
    /// or, for the dashboard's GET pages only, HTTP Basic with the key as password. Empty (the default), they are open,
    /// which the frontend allows only while it listens on loopback addresses (see <see cref="AllowOpenAdmin"/>). At
    /// least 16 characters when set.
    /// </summary>
    public string? AdminKey { get; set; }

    /// <summary>
    /// Lets the frontend start on a non-loopback address without an <see cref="AdminKey"/>, leaving the dashboard and the
    /// model operations open to whoever reaches it; it logs a warning at start. Default false: such a start is refused.
    /// </summary>
    public bool AllowOpenAdmin { get; set; }

    /// <summary>
    /// Web origins (<c>scheme://host[:port]</c>) whose pages may open a WebSocket to <c>/ws</c>, besides the frontend's own
    /// origin; <c>*</c> allows every origin. A client that sends no <c>Origin</c> (not a browser) is never refused.
    /// Default empty: same origin only.
    /// </summary>
    public string[] AllowedOrigins { get; set; } = [];

    /// <summary>
    /// WebSocket connections and gRPC <c>ModelStreamInfer</c> streams this frontend holds at most; the next upgrade is
    /// refused with 503 <c>overloaded</c> (and <c>Retry-After</c>), the next stream with <c>UNAVAILABLE</c>, so that one
    /// frontend's memory stays bounded and clients go to another. Range: [1, 1000000]. Default 20000.
    /// </summary>
    public int MaxConnections { get; set; } = 20_000;

    /// <summary>
    /// Long-lived connections (WebSockets, gRPC <c>ModelStreamInfer</c> streams) one remote address may hold on this
    /// frontend (an IPv6 address counts by its /64); the next is refused with 429 <c>rate_limited</c>, so that one host
    /// cannot take every slot of <see cref="MaxConnections"/>. Loopback addresses have their own cap,
    /// <see cref="MaxConnectionsPerLoopback"/>. Range: [1, 1000000]. Default 256.
    /// </summary>
    public int MaxConnectionsPerAddress { get; set; } = 256;

    /// <summary>
    /// As <see cref="MaxConnectionsPerAddress"/>, for a loopback address: local processes (a load generator, a reverse
    /// proxy on the same host whose clients are not told apart by forwarded headers). Range: [1, 1000000]. Default
    /// 1000000: in effect only <see cref="MaxConnections"/>.
    /// </summary>
    public int MaxConnectionsPerLoopback { get; set; } = 1_000_000;

    /// <summary>
    /// A WebSocket connection that has received no whole message and has had no request in flight for this long is
    /// closed (1000, reason <c>idle</c>); pings do not count (the server answers them below the protocol). A message must
    /// arrive whole within it, so an unfinished one cannot hold its buffer for longer. A gRPC <c>ModelStreamInfer</c>
    /// stream that reads no message and has nothing in flight for as long ends with <c>DEADLINE_EXCEEDED</c>. Zero:
    /// never. Range: [0, 1 day]. Default 5 min.
    /// </summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// A WebSocket message must arrive whole within this from its first frame, however busy the connection is (requests
    /// in flight do not extend it); past it the connection is closed (1008, reason <c>message not completed in N s</c>).
    /// Zero: no limit. Range: [0, 1 h]. Default 30 s.
    /// </summary>
    public TimeSpan MessageReceiveTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Messages one WebSocket connection may send per second (burst: one second's worth), counted before they are parsed,
    /// whatever they turn out to be; a message over it is read, dropped unparsed and answered <c>rate_limited</c>. A gRPC
    /// <c>ModelStreamInfer</c> stream has the same budget for its messages. Range: [1, 1000000]. Default 2000.
    /// </summary>
    public int MaxFramesPerSecond { get; set; } = 2000;

    /// <summary>
    /// Bytes one WebSocket connection may send per second, beside <see cref="MaxFramesPerSecond"/>, counted as they are
    /// read: within a message past it the rest is read only as the budget refills, and a message that begins while it is
    /// in debt is refused. Range: [max(<see cref="MaxFrameBytes"/>, <see cref="MaxBinaryBytes"/>), 16 GiB], so that the
    /// largest message allowed fits in a second's burst. Default 64 MiB.
    /// </summary>
    public long MaxBytesPerSecond { get; set; } = 64L << 20;

    /// <summary>
    /// A WebSocket connection whose messages keep passing its budget (<see cref="MaxFramesPerSecond"/>,
    /// <see cref="MaxBytesPerSecond"/>), with no second without a refusal, for this long is closed (1008, policy
    /// violation). Zero: the first message refused closes it. Range: [0, 10 min]. Default 10 s.
    /// </summary>
    public TimeSpan OverBudgetCloseAfter { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The longest prompt (UTF-8 bytes) a text request may carry, on every API; a longer one is refused with
    /// <c>payload_too_large</c> before it reaches the grid (a model's context bounds the tokens further). Range: [1,
    /// 64 MiB]. Default 64 KiB.
    /// </summary>
    public int MaxPromptBytes { get; set; } = 64 << 10;

    /// <summary>How long Kestrel keeps an idle HTTP keep-alive connection open. Range: [1 s, 1 h]. Default 2 min.</summary>
    public TimeSpan KeepAliveTimeout { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>How long Kestrel waits for a request's headers. Range: [1 s, 5 min]. Default 10 s.</summary>
    public TimeSpan RequestHeadersTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// On SIGTERM: how long requests in flight may go on finishing while the frontend refuses new ones and tells its
    /// clients (<c>warning</c> <c>draining</c>); then sockets close with 1001. Range: [0, 10 min]. Default 20 s.
    /// </summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(20);
}

/// <summary>Checks <see cref="FrontendOptions"/>, all errors at once.</summary>
public sealed class FrontendOptionsValidator : IValidateOptions<FrontendOptions>
{
    public ValidateOptionsResult Validate(string? name, FrontendOptions o)
    {
        var errors = new List<string>();
        if (o.MaxFrameBytes is < 1024 or > 64 << 20)
        {
            errors.Add($"{FrontendOptions.Section}:MaxFrameBytes must be in [1024, 67108864]; got {o.MaxFrameBytes}.");
        }

        if (o.MaxBinaryBytes is < 1024 or > 1 << 30)
        {
            errors.Add($"{FrontendOptions.Section}:MaxBinaryBytes must be in [1024, 1073741824]; got {o.MaxBinaryBytes}.");
        }

        if (o.MaxInFlightBytes < o.MaxBinaryBytes || o.MaxInFlightBytes > 16L << 30)
        {
            errors.Add($"{FrontendOptions.Section}:MaxInFlightBytes must be in [MaxBinaryBytes ({o.MaxBinaryBytes}), 17179869184]; got {o.MaxInFlightBytes}.");
        }

        if (o.SendQueueBytes is < 64 << 10 or > uint.MaxValue - 1)
        {
            errors.Add($"{FrontendOptions.Section}:SendQueueBytes must be in [65536, 4294967294]; got {o.SendQueueBytes}.");
        }

        if (!string.IsNullOrEmpty(o.GrpcUrl) && !(Uri.TryCreate(o.GrpcUrl, UriKind.Absolute, out var grpc) && grpc.Scheme == Uri.UriSchemeHttp))
        {
            errors.Add($"{FrontendOptions.Section}:GrpcUrl must be an http:// URL (h2c) or empty; got '{o.GrpcUrl}'.");
        }

        if (o.SendQueueCapacity is < 16 or > 1_000_000)
        {
            errors.Add($"{FrontendOptions.Section}:SendQueueCapacity must be in [16, 1000000]; got {o.SendQueueCapacity}.");
        }

        if (o.MaxConcurrentSubmits is < 1 or > 10_000)
        {
            errors.Add($"{FrontendOptions.Section}:MaxConcurrentSubmits must be in [1, 10000]; got {o.MaxConcurrentSubmits}.");
        }

        if (o.WatchdogGrace < TimeSpan.Zero || o.WatchdogGrace > TimeSpan.FromMinutes(10))
        {
            errors.Add($"{FrontendOptions.Section}:WatchdogGrace must be in [0, 10 min]; got {o.WatchdogGrace}.");
        }

        if (o.MaxConnections is < 1 or > 1_000_000)
        {
            errors.Add($"{FrontendOptions.Section}:MaxConnections must be in [1, 1000000]; got {o.MaxConnections}.");
        }

        ValidateLimits(o, errors);

        if (o.DrainTimeout < TimeSpan.Zero || o.DrainTimeout > TimeSpan.FromMinutes(10))
        {
            errors.Add($"{FrontendOptions.Section}:DrainTimeout must be in [0, 10 min]; got {o.DrainTimeout}.");
        }

        if (!string.IsNullOrEmpty(o.AdminKey) && o.AdminKey.Length < 16)
        {
            errors.Add($"{FrontendOptions.Section}:AdminKey must be at least 16 characters when set; got {o.AdminKey.Length}.");
        }

        foreach (var origin in o.AllowedOrigins.Where(a => a != "*" && !Uri.TryCreate(a, UriKind.Absolute, out _)))
        {
            errors.Add($"{FrontendOptions.Section}:AllowedOrigins entries must be origins such as 'https://app.example.com' or '*'; got '{origin}'.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>The abuse limits: connections per address, idleness, the frame budget, prompts, Kestrel's timeouts.</summary>
    private static void ValidateLimits(FrontendOptions o, List<string> errors)
    {
        void Range<T>(string key, T value, T min, T max, string shown) where T : IComparable<T>
        {
            if (value.CompareTo(min) < 0 || value.CompareTo(max) > 0)
            {
                errors.Add($"{FrontendOptions.Section}:{key} must be in {shown}; got {value}.");
            }
        }

        Range(nameof(o.MaxConnectionsPerAddress), o.MaxConnectionsPerAddress, 1, 1_000_000, "[1, 1000000]");
        Range(nameof(o.MaxConnectionsPerLoopback), o.MaxConnectionsPerLoopback, 1, 1_000_000, "[1, 1000000]");
        Range(nameof(o.IdleTimeout), o.IdleTimeout, TimeSpan.Zero, TimeSpan.FromDays(1), "[0, 1 day]");
        Range(nameof(o.MaxFramesPerSecond), o.MaxFramesPerSecond, 1, 1_000_000, "[1, 1000000]");
        var largest = Math.Max(o.MaxFrameBytes, o.MaxBinaryBytes);
        Range(nameof(o.MaxBytesPerSecond), o.MaxBytesPerSecond, largest, 16L << 30, $"[max(MaxFrameBytes, MaxBinaryBytes) ({largest}), 17179869184]");
        Range(nameof(o.MessageReceiveTimeout), o.MessageReceiveTimeout, TimeSpan.Zero, TimeSpan.FromHours(1), "[0, 1 h]");
        Range(nameof(o.OverBudgetCloseAfter), o.OverBudgetCloseAfter, TimeSpan.Zero, TimeSpan.FromMinutes(10), "[0, 10 min]");
        Range(nameof(o.MaxPromptBytes), o.MaxPromptBytes, 1, 64 << 20, "[1, 67108864]");
        Range(nameof(o.KeepAliveTimeout), o.KeepAliveTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromHours(1), "[1 s, 1 h]");
        Range(nameof(o.RequestHeadersTimeout), o.RequestHeadersTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(5), "[1 s, 5 min]");
    }
}
