namespace StreamInfer.Grains.Models;

/// <summary>
/// A batch model that carries state from one request of a sequence to the next (a <c>sequence</c> section in its
/// config). The grid keeps each sequence's state next to the model's device, gathers the states of a batch's rows into
/// the state inputs before the run and scatters the state outputs back after it; clients never send or see state.
/// </summary>
public interface IStatefulModel : IBatchModel
{
    /// <summary>A new sequence's state, at the model's initial values until its first run. Thread-safe.</summary>
    SequenceState Open();

    /// <summary>Takes back the state of a sequence that ended; the caller ensures no batch of it is on the device.
    /// Thread-safe.</summary>
    void Close(SequenceState state);

    /// <summary>
    /// Runs one batch of requests that passed <see cref="IInferenceModel.Check"/>, each a row of the sequence whose
    /// state is at the same index of <paramref name="states"/> (at most one request per sequence). A request that ran
    /// has its sequence's state advanced; one that failed leaves it as it was. Device thread only.
    /// </summary>
    IReadOnlyList<ItemOutcome> Run(IReadOnlyList<InferRequest> batch, IReadOnlyList<SequenceState> states);
}

/// <summary>One sequence's state, held in buffers from its model's pool. Read and written on the device thread only.</summary>
public sealed class SequenceState
{
    internal SequenceState(byte[][] buffers) => Buffers = buffers;

    /// <summary>Each state pair's values for this sequence.</summary>
    internal byte[][] Buffers { get; }

    /// <summary>No run has written the state yet: it is the model's initial values.</summary>
    internal bool Fresh { get; set; } = true;
}
