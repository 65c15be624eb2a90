using System.Collections.Immutable;

namespace StreamInfer.Grains.Models;

/// <summary>What one request of a batch came to: outputs, or an error that ends only that request.</summary>
public readonly record struct ItemOutcome(ImmutableArray<NamedTensor> Outputs, InferError? Error)
{
    public static ItemOutcome Ok(ImmutableArray<NamedTensor> outputs) => new(outputs, null);

    public static ItemOutcome Failed(InferError error) => new(default, error);
}

/// <summary>The verdict on one request at admission: an error, or how many batch rows it fills.</summary>
public readonly record struct RequestCheck(InferError? Error, int Rows)
{
    public static RequestCheck Invalid(string message) => new(new InferError(ErrorCode.InvalidInput, message), 0);
}

/// <summary>
/// A loaded model version on one device. <see cref="Check"/> is cheap, thread-safe and runs on the grain scheduler at
/// admission; the model's compute (<see cref="IBatchModel.Run"/>, a decoder's steps) may block for as long as it takes
/// and runs only on its device's worker thread, one batch at a time.
/// </summary>
public interface IInferenceModel : IDisposable
{
    string Name { get; }

    string Version { get; }

    /// <summary>The inputs the model takes (batch axis first, -1); empty when it takes any (echo).</summary>
    ImmutableArray<TensorSpec> Inputs { get; }

    /// <summary>The outputs it returns; empty when they mirror the inputs (echo).</summary>
    ImmutableArray<TensorSpec> Outputs { get; }

    /// <summary>How long a full batch took at warm-up, in ms: the admission estimate until batches have run.</summary>
    double WarmBatchMs { get; }

    /// <summary>Checks a request against what the model takes; an error names the input and the mismatch.</summary>
    RequestCheck Check(InferRequest request);

    /// <summary>
    /// Runs the model once at <paramref name="batchSize"/> before it serves (see <see cref="WarmupPolicy"/>) and updates
    /// <see cref="WarmBatchMs"/>. Returns why it failed, or null. Device thread only. A model with nothing to warm keeps
    /// this default.
    /// </summary>
    string? WarmUp(int batchSize) => null;
}

/// <summary>A model that answers a batch of requests in one run (echo and tensor models).</summary>
public interface IBatchModel : IInferenceModel
{
    /// <summary>Runs one batch of requests that passed <see cref="IInferenceModel.Check"/>; returns one outcome per
    /// request, in order.</summary>
    IReadOnlyList<ItemOutcome> Run(IReadOnlyList<InferRequest> batch);
}
