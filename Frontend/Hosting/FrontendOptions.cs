using Microsoft.Extensions.Options;

namespace StreamInfer.Frontend.Hosting;

/// <summary>Socket-side limits of a frontend. Section <c>StreamInfer:Frontend</c>.</summary>
public sealed class FrontendOptions
{
    public const string Section = "StreamInfer:Frontend";

    /// <summary>Largest WebSocket message or HTTP body accepted; larger ones get <c>payload_too_large</c>. Range: [1 KiB, 64 MiB]. Default 1 MiB.</summary>
    public int MaxFrameBytes { get; set; } = 1 << 20;

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
    /// (<c>POST /api/reload</c>, <c>POST /api/models/{name}/rollout|rollback</c>) need it (<c>Authorization: Bearer KEY</c>,
    /// or HTTP Basic with the key as password); empty (the default), they are open. At least 16 characters when set.
    /// </summary>
    public string? AdminKey { get; set; }

    /// <summary>
    /// WebSocket connections this frontend holds at most; the next upgrade is refused with 503 <c>overloaded</c> (and
    /// <c>Retry-After</c>), so that one frontend's memory stays bounded and clients go to another. Range: [1, 1000000].
    /// Default 20000.
    /// </summary>
    public int MaxConnections { get; set; } = 20_000;

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

        if (o.DrainTimeout < TimeSpan.Zero || o.DrainTimeout > TimeSpan.FromMinutes(10))
        {
            errors.Add($"{FrontendOptions.Section}:DrainTimeout must be in [0, 10 min]; got {o.DrainTimeout}.");
        }

        if (!string.IsNullOrEmpty(o.AdminKey) && o.AdminKey.Length < 16)
        {
            errors.Add($"{FrontendOptions.Section}:AdminKey must be at least 16 characters when set; got {o.AdminKey.Length}.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
