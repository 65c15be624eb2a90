using Microsoft.Extensions.Logging;
using Orleans.Placement;
using Orleans.Runtime.Placement;

namespace StreamInfer.Grains.Placement;

/// <summary>
/// Places a grain whose string key is a <see cref="BatcherKey"/> on the silo its key names, so that a batcher runs
/// beside the device it owns. Orleans' role-based placement cannot do this: its role is the executable's name, the same
/// for every silo.
/// </summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.SiloKeyPlacement")]
public sealed class SiloKeyPlacement : PlacementStrategy
{
    internal static readonly SiloKeyPlacement Instance = new();
}

/// <summary>Marks a grain class for <see cref="SiloKeyPlacement"/>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class SiloKeyPlacementAttribute() : PlacementAttribute(SiloKeyPlacement.Instance);

/// <summary>
/// Chooses the active, compatible silo whose name (as it appears in keys, <see cref="SiloNames.ForKey"/>) the key
/// names. When that silo is not in the cluster (gone, or a key from elsewhere), the grain activates on the silo that
/// asked, which then reports the model unavailable on a device it does not own rather than serving from a wrong one.
/// </summary>
internal sealed partial class SiloKeyPlacementDirector(IClusterMembershipService membership, ILogger<SiloKeyPlacementDirector> logger) : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var compatible = context.GetCompatibleSilos(target);
        var key = target.GrainIdentity.Key.ToString();
        var wanted = key.Split('/') is { Length: 3 } parts ? parts[1] : null;
        foreach (var member in membership.CurrentSnapshot.Members.Values)
        {
            if (member.Status == SiloStatus.Active && SiloNames.ForKey(member.Name) == wanted && compatible.Contains(member.SiloAddress))
            {
                return Task.FromResult(member.SiloAddress);
            }
        }

        LogNoSuchSilo(logger, key);
        return Task.FromResult(compatible.Contains(context.LocalSilo) ? context.LocalSilo : compatible[Random.Shared.Next(compatible.Length)]);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "No active silo matches the silo named in grain key {Key}; activating it elsewhere")]
    private static partial void LogNoSuchSilo(ILogger logger, string key);
}

/// <summary>How silo names appear in grain keys.</summary>
public static class SiloNames
{
    /// <summary>The silo name with '/' (the key separator) replaced.</summary>
    public static string ForKey(string siloName) => siloName.Replace('/', '_');
}
