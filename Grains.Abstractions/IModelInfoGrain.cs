namespace StreamInfer;

/// <summary>
/// Reads the model catalog of the silo it activates on, so that a frontend (co-hosted or an Orleans client) can answer
/// KServe metadata and readiness without holding model state itself. A stateless worker, so that no single hot grain
/// sits on this path. Calls are read-only and may be retried.
/// </summary>
[Alias("StreamInfer.IModelInfoGrain")]
public interface IModelInfoGrain : IGrainWithIntegerKey
{
    /// <summary>One model's metadata and state; null when no model of that name is known.</summary>
    [Alias("GetModel")]
    Task<ModelInfo?> GetModelAsync(string name);

    /// <summary>Every model and every repository problem.</summary>
    [Alias("GetRepository")]
    Task<RepositoryStatus> GetRepositoryAsync();
}
