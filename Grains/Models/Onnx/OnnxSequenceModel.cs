using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// A <c>tensor</c> model with a <c>sequence</c> section: each sequence's state is a buffer per state pair, taken from
/// a pool kept with the model on its device and given back when the sequence ends, so sequences that come and go
/// allocate nothing once the pool holds as many as run at once. <see cref="TensorBatch"/> gathers a batch's states into
/// the state inputs and scatters the state outputs back once the run has succeeded.
/// </summary>
internal sealed class OnnxSequenceModel : OnnxTensorModel, IStatefulModel
{
    private readonly object _lock = new();
    private readonly StatePair[] _pairs;
    private readonly Stack<byte[][]> _free = new();
    private readonly int _keep;

    internal OnnxSequenceModel(ModelDefinition definition, InferenceSession session, TensorSignature signature)
        : base(definition, session, signature)
    {
        _pairs = [.. signature.Sequence!.States];
        // The pool never keeps more than the most sequences a batcher holds at once.
        _keep = definition.Options.Sequence?.MaxSequences ?? 0;
    }

    /// <summary>States in use: opened and not closed.</summary>
    internal int OpenStates { get; private set; }

    public SequenceState Open()
    {
        lock (_lock)
        {
            OpenStates++;
            if (_free.TryPop(out var kept))
            {
                return new SequenceState(kept);
            }
        }

        return new SequenceState([.. _pairs.Select(p => new byte[p.RowBytes])]);
    }

    public void Close(SequenceState state)
    {
        lock (_lock)
        {
            OpenStates--;
            if (_free.Count + OpenStates < _keep)
            {
                _free.Push(state.Buffers);
            }
        }
    }

    public IReadOnlyList<ItemOutcome> Run(IReadOnlyList<InferRequest> batch, IReadOnlyList<SequenceState> states) => RunBatch(batch, states);
}
