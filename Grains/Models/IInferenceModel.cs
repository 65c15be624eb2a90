using System.Collections.Immutable;

namespace StreamInfer.Grains.Models;

/// <summary>What one request of a batch came to: outputs, or an error that ends only that request.</summary>
public readonly record struct ItemOutcome(ImmutableArray<NamedTensor> Outputs, InferError? Error)
{
    public static ItemOutcome Ok(ImmutableArray<NamedTensor> outputs) => new(outputs, null);

}

/// <summary>
/// A loaded model version. <see cref="Validate"/> is cheap and runs on the grain scheduler at admission;
/// <see cref="Run"/> may block for as long as the compute takes and runs only on a device worker thread.
/// </summary>
public interface IInferenceModel
{
    string Name { get; }

    string Version { get; }

    /// <summary>Checks a request against what the model takes; null when it may join a batch.</summary>
    InferError? Validate(InferRequest request);

    /// <summary>Runs one batch; returns one outcome per request, in order.</summary>
    IReadOnlyList<ItemOutcome> Run(IReadOnlyList<InferRequest> batch);
}
