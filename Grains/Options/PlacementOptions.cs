using Microsoft.Extensions.Options;

namespace StreamInfer.Grains.Options;

/// <summary>Where sessions send work in a cluster (docs/decisions.md D8). Section <c>StreamInfer:Placement</c>.</summary>
public sealed class PlacementOptions
{
    public const string Section = "StreamInfer:Placement";

    /// <summary>
    /// A session sends a request to its own silo's batcher unless that batcher already holds more than this many full
    /// batches (<c>max_batch_size</c> rows each) in its queue; then to the least-loaded batcher of the model on another
    /// silo, if that one is at least a batch shorter. 0 never spills. Range: [0, 1000]. Default 2.
    /// </summary>
    public int SpillBatches { get; set; } = 2;

    /// <summary>How often a silo reads the other silos' queue depths (and learns of new silos). Range: [10 ms, 1 min]. Default 250 ms.</summary>
    public TimeSpan LoadRefreshInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// When a silo shuts down gracefully (SIGTERM, or a scale-in): how long its batchers may go on running the batches
    /// and generations they hold, after refusing new work and ending what was only queued. What still runs then ends
    /// with <c>model_unavailable</c>. The hosts set their shutdown timeout to cover it (the Silo: this plus 25 s).
    /// Range: [0, 10 min]. Default 20 s.
    /// </summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(20);
}

/// <summary>Checks <see cref="PlacementOptions"/>, all errors at once.</summary>
public sealed class PlacementOptionsValidator : IValidateOptions<PlacementOptions>
{
    public ValidateOptionsResult Validate(string? name, PlacementOptions o)
    {
        var errors = new List<string>();
        if (o.SpillBatches is < 0 or > 1000)
        {
            errors.Add($"{PlacementOptions.Section}:SpillBatches must be in [0, 1000]; got {o.SpillBatches}.");
        }

        if (o.LoadRefreshInterval < TimeSpan.FromMilliseconds(10) || o.LoadRefreshInterval > TimeSpan.FromMinutes(1))
        {
            errors.Add($"{PlacementOptions.Section}:LoadRefreshInterval must be in [10 ms, 1 min]; got {o.LoadRefreshInterval}.");
        }

        if (o.DrainTimeout < TimeSpan.Zero || o.DrainTimeout > TimeSpan.FromMinutes(10))
        {
            errors.Add($"{PlacementOptions.Section}:DrainTimeout must be in [0, 10 min]; got {o.DrainTimeout}.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
