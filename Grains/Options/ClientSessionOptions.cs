using Microsoft.Extensions.Options;

namespace StreamInfer.Grains.Options;

/// <summary>Per-client limits enforced by <c>ClientSessionGrain</c>. Section <c>StreamInfer:Session</c>.</summary>
public sealed class ClientSessionOptions
{
    public const string Section = "StreamInfer:Session";

    /// <summary>Token-bucket refill rate, requests per second per client. Range: (0, 1e6]. Default 1000.</summary>
    public double RatePerSecond { get; set; } = 1000;

    /// <summary>Token-bucket capacity: how many requests a client may send at once after being idle. Range: [1, 1e6]. Default 200.</summary>
    public double Burst { get; set; } = 200;

    /// <summary>Most unfinished requests a client may have; a warning at 80%, refusal when full. Range: [1, 100000]. Default 256.</summary>
    public int BacklogCapacity { get; set; } = 256;

    /// <summary>Deadline of a request that names none, from admission. Range: (0, MaxTimeout]. Default 30 s.</summary>
    public TimeSpan DefaultTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Longest deadline a request may ask for; longer ones are clamped. Range: [DefaultTimeout, 1 h]. Default 5 min.</summary>
    public TimeSpan MaxTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// How long past its deadline a request's backlog slot is kept when no completion has arrived (a batcher's silo
    /// died, a message was lost) before the session reclaims it. Range: [0, 1 h]. Default 30 s.
    /// </summary>
    public TimeSpan OrphanGrace { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Most stateful sequences a client may have open at once; a start past it is refused <c>bad_request</c> until one
    /// ends (sequences idle past their model's idle timeout no longer count). Range: [1, 100000]. Default 256.
    /// </summary>
    public int MaxSequences { get; set; } = 256;
}

/// <summary>Checks every <see cref="ClientSessionOptions"/> range and reports all violations at once.</summary>
public sealed class ClientSessionOptionsValidator : IValidateOptions<ClientSessionOptions>
{
    public ValidateOptionsResult Validate(string? name, ClientSessionOptions o)
    {
        var errors = new List<string>();
        ClientLimitRanges.Check(ClientSessionOptions.Section, o.RatePerSecond, o.Burst, o.BacklogCapacity, errors);

        if (o.MaxTimeout <= TimeSpan.Zero || o.MaxTimeout > TimeSpan.FromHours(1))
        {
            errors.Add($"{ClientSessionOptions.Section}:MaxTimeout must be in (0, 1 h]; got {o.MaxTimeout}.");
        }

        if (o.DefaultTimeout <= TimeSpan.Zero || o.DefaultTimeout > o.MaxTimeout)
        {
            errors.Add($"{ClientSessionOptions.Section}:DefaultTimeout must be in (0, MaxTimeout={o.MaxTimeout}]; got {o.DefaultTimeout}.");
        }

        if (o.OrphanGrace < TimeSpan.Zero || o.OrphanGrace > TimeSpan.FromHours(1))
        {
            errors.Add($"{ClientSessionOptions.Section}:OrphanGrace must be in [0, 1 h]; got {o.OrphanGrace}.");
        }

        if (o.MaxSequences is < 1 or > 100_000)
        {
            errors.Add($"{ClientSessionOptions.Section}:MaxSequences must be in [1, 100000]; got {o.MaxSequences}.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

/// <summary>
/// The ranges of a client's limits, one definition for <c>StreamInfer:Session</c>'s defaults and for each API key's own
/// (<c>StreamInfer:Auth:Keys</c>), which replace them for that client.
/// </summary>
public static class ClientLimitRanges
{
    /// <summary>The highest token-bucket refill rate, requests per second; the lowest is anything above 0.</summary>
    public const double MaxRatePerSecond = 1e6;

    /// <summary>The largest token-bucket capacity; the smallest is 1.</summary>
    public const double MaxBurst = 1e6;

    /// <summary>The most unfinished requests a client may be allowed; the fewest is 1.</summary>
    public const int MaxBacklogCapacity = 100_000;

    /// <summary>The highest priority ceiling: a model has at most 16 levels, 0 to 15.</summary>
    public const int MaxPriority = 15;

    /// <summary>Adds a message to <paramref name="errors"/> for each limit given and out of its range, named under <paramref name="at"/>.</summary>
    public static void Check(string at, double? ratePerSecond, double? burst, int? backlogCapacity, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (ratePerSecond is { } rate && !(rate > 0 && rate <= MaxRatePerSecond))
        {
            errors.Add($"{at}:RatePerSecond must be in (0, {MaxRatePerSecond}]; got {rate}.");
        }

        if (burst is { } b && !(b >= 1 && b <= MaxBurst))
        {
            errors.Add($"{at}:Burst must be in [1, {MaxBurst}]; got {b}.");
        }

        if (backlogCapacity is < 1 or > MaxBacklogCapacity)
        {
            errors.Add($"{at}:BacklogCapacity must be in [1, {MaxBacklogCapacity}]; got {backlogCapacity}.");
        }
    }

    /// <summary>Adds a message to <paramref name="errors"/> when <paramref name="maxPriority"/> is given and outside [0, <see cref="MaxPriority"/>].</summary>
    public static void CheckPriority(string key, int? maxPriority, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (maxPriority is < 0 or > MaxPriority)
        {
            errors.Add($"{key} must be in [0, {MaxPriority}]; got {maxPriority}.");
        }
    }
}
