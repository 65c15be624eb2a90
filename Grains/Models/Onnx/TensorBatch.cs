using System.Collections.Immutable;
using Microsoft.ML.OnnxRuntime;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// Stacks a batch of requests into a tensor model's inputs and splits its outputs back per request. The batch is first
/// cut into groups (<see cref="BatchCut"/>: a request much longer than its batch-mates runs apart, and no group passes
/// the batch byte cap); within a group requests stack along the first axis, where they differ along a dynamic axis
/// they are padded with zeros to the group's longest, the mask input (if configured) is 1 over each request's own
/// positions and 0 over padding, and outputs are cut back to each request's own lengths. Staging buffers for the
/// inputs are pinned, kept per input, grown to the largest group and shrunk back after a rare large one, so a batch
/// allocates no input memory. Device thread only.
/// </summary>
internal sealed class TensorBatch
{
    private readonly TensorSignature _signature;
    private readonly string[] _inputNames;
    private readonly PinnedBuffer[] _staging;

    // Outputs a request gets back: all but a stateful model's states.
    private readonly int _returned;

    // Scratch for the copy plan; a batch is only ever built on the device's own thread.
    private readonly List<Run> _runs = [];

    public TensorBatch(TensorSignature signature)
    {
        _signature = signature;
        _inputNames = [.. signature.Inputs.Select(i => i.Name)];
        _staging = [.. signature.Inputs.Select(_ => new PinnedBuffer())];
        _returned = signature.Outputs.Length - (signature.Sequence?.States.Length ?? 0);
    }

    /// <summary>
    /// Lays the batch out and cuts it into the groups that run together (see <see cref="BatchCut"/>): requests that
    /// disagree on a shared input never share one; each group's requests are padded to its own longest.
    /// </summary>
    public List<BatchGroup> Plan(IReadOnlyList<InferRequest> batch, IReadOnlyList<SequenceState>? states, long maxBatchBytes)
    {
        var layouts = new RequestLayout[batch.Count];
        for (var j = 0; j < batch.Count; j++)
        {
            layouts[j] = Layout(batch[j], states?[j]);
        }

        var groups = new List<BatchGroup>();
        foreach (var indices in BatchCut.CutAll(_signature, layouts, maxBatchBytes))
        {
            var members = indices.Select(j => layouts[j]).ToArray();
            var padded = new Dictionary<string, long>(StringComparer.Ordinal);
            long totalRows = 0;
            foreach (var layout in members)
            {
                totalRows += layout.Rows;
                foreach (var (axis, size) in layout.Axes)
                {
                    padded[axis] = Math.Max(padded.GetValueOrDefault(axis), size);
                }
            }

            groups.Add(new BatchGroup(indices, members, padded, totalRows));
        }

        return groups;
    }

    private RequestLayout Layout(InferRequest request, SequenceState? state)
    {
        var rows = 1L;
        bool? batched = null;
        var axes = new Dictionary<string, long>(StringComparer.Ordinal);
        var byInput = new NamedTensor?[_signature.Inputs.Length];
        foreach (var input in request.Inputs)
        {
            var index = Array.IndexOf(_inputNames, input.Name);
            byInput[index] = input;
            var s = _signature.Inputs[index];
            if (s.Shared)
            {
                continue;
            }

            var isBatched = input.Tensor.Shape.Length == s.Rank;
            if (batched is null)
            {
                batched = isBatched;
                rows = isBatched ? input.Tensor.Shape[s.BatchAxis] : 1;
            }

            for (var k = 0; k < s.Rank; k++)
            {
                if (s.IsOwnAxis(k) && s.Dims[k] < 0)
                {
                    axes[s.Axes[k]!] = input.Tensor.Shape[s.RequestAxis(k, isBatched)];
                }
            }
        }

        return new RequestLayout(rows, batched ?? false, axes, byInput, state, request.Sequence);
    }

    /// <summary>Builds one input of the batch in its pinned staging buffer (or as a string tensor).</summary>
    public OrtValue Stage(int index, BatchGroup group)
    {
        var (_, layouts, padded, totalRows) = group;
        var slot = _signature.Inputs[index];
        var shape = BatchShape(slot, totalRows, padded);
        if (slot.Type == TensorElementType.String)
        {
            var value = OrtValue.CreateTensorWithEmptyStrings(OrtAllocator.DefaultInstance, shape);
            long rowStart = 0;
            for (var j = 0; j < layouts.Length; j++)
            {
                var strings = layouts[j].Inputs[index]!.Tensor.Strings;
                Runs.Collect(OwnShape(slot, layouts[j]), shape, rowStart, _runs, slot.BatchAxis);
                foreach (var run in _runs)
                {
                    for (var e = 0L; e < run.Length; e++)
                    {
                        value.StringTensorSetElementAt(strings[(int)(run.Small + e)].AsSpan(), (int)(run.Big + e));
                    }
                }

                // A shared input's value is every request's: it is fed once.
                if (slot.Shared)
                {
                    break;
                }

                rowStart += layouts[j].Rows;
            }

            return value;
        }

        var size = slot.Type.ElementSize();
        var bytes = ElementCount(shape) * size;
        var buffer = _staging[index].Get(bytes);
        var target = buffer.AsSpan(0, (int)bytes);
        if (slot.Shared)
        {
            layouts[0].Inputs[index]!.Tensor.Data.Span.CopyTo(target);
            return OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, slot.OrtType, shape, _staging[index].Address, bytes);
        }

        var isMask = index == _signature.MaskIndex;
        var sequence = _signature.Sequence;
        var pair = sequence?.StateIndex(index) ?? -1;
        var flag = index == sequence?.StartInput ? 1 : index == sequence?.EndInput ? 2 : 0;
        var one = isMask || flag != 0 ? SequenceSignature.Element(slot.Type, 1) : null;
        // A row the grid fills writes only what is not zero.
        var needsClear = isMask || pair >= 0 || flag != 0;
        for (var j = 0; j < layouts.Length && !needsClear; j++)
        {
            needsClear = Padded(slot, OwnShape(slot, layouts[j]), shape);
        }

        if (needsClear)
        {
            // Padding is zero: for a mask, zero marks the padded positions.
            target.Clear();
        }

        long rowOffset = 0;
        for (var j = 0; j < layouts.Length; j++)
        {
            Runs.Collect(OwnShape(slot, layouts[j]), shape, rowOffset, _runs, slot.BatchAxis);
            if (layouts[j].Inputs[index] is { } given)
            {
                var source = given.Tensor.Data.Span;
                foreach (var run in _runs)
                {
                    source.Slice((int)(run.Small * size), (int)(run.Length * size)).CopyTo(target.Slice((int)(run.Big * size)));
                }
            }
            else if (isMask)
            {
                foreach (var run in _runs)
                {
                    for (var e = 0L; e < run.Length; e++)
                    {
                        one!.CopyTo(target.Slice((int)((run.Big + e) * size)));
                    }
                }
            }
            else if (pair >= 0 && layouts[j].State is { } state)
            {
                StateTransfer.Gather(target, shape, slot.BatchAxis, rowOffset, sequence!.States[pair], state.Fresh ? null : state.Buffers[pair]);
            }
            else if (flag != 0 && layouts[j].Control is { } control && (flag == 1 ? control.Start : control.End))
            {
                // A flag has one element per row: the row's index is its place.
                one!.CopyTo(target.Slice((int)(rowOffset * size)));
            }

            rowOffset += layouts[j].Rows;
        }

        return OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, slot.OrtType, shape, _staging[index].Address, bytes);
    }

    /// <summary>Splits the run's outputs back per request, each cut to the request's own lengths.</summary>
    public ItemOutcome[] Split(IReadOnlyList<OrtValue> outputs, BatchGroup group)
    {
        var (_, layouts, padded, totalRows) = group;
        var perRequest = new NamedTensor[layouts.Length][];
        for (var j = 0; j < layouts.Length; j++)
        {
            perRequest[j] = new NamedTensor[_returned];
        }

        var returned = 0;

        for (var o = 0; o < outputs.Count; o++)
        {
            var slot = _signature.Outputs[o];
            var value = outputs[o];
            var shape = value.GetTensorTypeAndShape().Shape;
            var b = slot.BatchAxis;
            if (shape.Length <= b || shape[b] != totalRows)
            {
                throw new InvalidOperationException($"output '{slot.Name}' has shape [{string.Join(',', shape)}]; a batch of {totalRows} rows needs it on axis {b}.");
            }

            if (_signature.Sequence?.IsState(o) == true)
            {
                continue;
            }

            var strings = slot.Type == TensorElementType.String ? value.GetStringTensorAsArray() : null;
            var size = slot.Type.ElementSize();
            long rowOffset = 0;
            for (var j = 0; j < layouts.Length; j++)
            {
                var layout = layouts[j];
                var own = new long[shape.Length];
                for (var k = 0; k < shape.Length; k++)
                {
                    // An axis the batch padded comes back at the request's own length.
                    var axis = k < slot.Axes.Length ? slot.Axes[k] : null;
                    own[k] = k == b
                        ? layout.Rows
                        : axis is not null && layout.Axes.TryGetValue(axis, out var mine) && padded.TryGetValue(axis, out var max) && shape[k] == max
                            ? mine
                            : shape[k];
                }

                var count = own.Aggregate(1L, (a, b) => a * b);
                var ownShape = layout.Batched ? own.ToImmutableArray() : own.Where((_, k) => k != b).ToImmutableArray();
                Tensor tensor;
                Runs.Collect(own, shape, rowOffset, _runs, b);
                if (strings is not null)
                {
                    var picked = new string[count];
                    foreach (var run in _runs)
                    {
                        Array.Copy(strings, run.Big, picked, run.Small, run.Length);
                    }

                    tensor = new Tensor(slot.Type, ownShape, ReadOnlyMemory<byte>.Empty, ImmutableArray.Create(picked));
                }
                else
                {
                    var data = new byte[count * size];
                    var raw = value.GetTensorMutableRawData();
                    foreach (var run in _runs)
                    {
                        raw.Slice((int)(run.Big * size), (int)(run.Length * size)).CopyTo(data.AsSpan((int)(run.Small * size)));
                    }

                    tensor = new Tensor(slot.Type, ownShape, data, []);
                }

                perRequest[j][returned] = new NamedTensor(slot.Name, tensor);
                rowOffset += layout.Rows;
            }

            returned++;
        }

        // Last, once every output is known good: a state changes only with a run whose results are delivered.
        if (_signature.Sequence is { States.Length: > 0 } && Array.Exists(layouts, l => l.State is not null))
        {
            StateTransfer.Scatter(outputs, _signature, group);
        }

        var outcomes = new ItemOutcome[layouts.Length];
        for (var j = 0; j < layouts.Length; j++)
        {
            outcomes[j] = ItemOutcome.Ok(ImmutableArray.Create(perRequest[j]));
        }

        return outcomes;
    }

    internal static long[] OwnShape(TensorSlot slot, RequestLayout layout)
    {
        var own = new long[slot.Rank];
        for (var k = 0; k < slot.Rank; k++)
        {
            own[k] = !slot.IsOwnAxis(k) ? layout.Rows : slot.Dims[k] >= 0 ? slot.Dims[k] : layout.Axes[slot.Axes[k]!];
        }

        return own;
    }

    /// <summary>The shape of input <paramref name="slot"/> for a batch of <paramref name="rows"/> rows, dynamic axes at
    /// their padded lengths.</summary>
    private static long[] BatchShape(TensorSlot slot, long rows, Dictionary<string, long> padded)
    {
        var shape = new long[slot.Rank];
        for (var k = 0; k < slot.Rank; k++)
        {
            shape[k] = !slot.IsOwnAxis(k) ? rows : slot.Dims[k] >= 0 ? slot.Dims[k] : padded[slot.Axes[k]!];
        }

        return shape;
    }

    /// <summary>Whether a request's own shape is smaller than the batch's along any axis but the batch axis.</summary>
    private static bool Padded(TensorSlot slot, long[] own, long[] shape)
    {
        for (var k = 0; k < own.Length; k++)
        {
            if (slot.IsOwnAxis(k) && own[k] != shape[k])
            {
                return true;
            }
        }

        return false;
    }

    private static long ElementCount(long[] shape)
    {
        var count = 1L;
        foreach (var d in shape)
        {
            count *= d;
        }

        return count;
    }

    /// <summary>Tells each staging buffer what the group that has just run needed of it, so that it can shrink back.</summary>
    public void Trim(BatchGroup group)
    {
        for (var i = 0; i < _staging.Length; i++)
        {
            if (_signature.Inputs[i].Type != TensorElementType.String)
            {
                _staging[i].Trim(BatchCut.InputBytes(_signature.Inputs[i], group.TotalRows, group.Padded));
            }
        }
    }

    /// <summary>The bytes the staging buffers hold now.</summary>
    public long StagingBytes => _staging.Sum(b => b.Capacity);

    /// <summary>Frees the staging buffers.</summary>
    public void Release()
    {
        foreach (var buffer in _staging)
        {
            buffer.Release();
        }
    }

    /// <summary>
    /// One request in a batch: its rows, whether it sent the batch axis, its dynamic axis lengths, its inputs by index,
    /// and for a stateful model's request its sequence's state and flags.
    /// </summary>
    internal sealed record RequestLayout(long Rows, bool Batched, Dictionary<string, long> Axes, NamedTensor?[] Inputs, SequenceState? State = null, SequenceControl? Control = null);

    /// <summary>
    /// Requests that run together: their places in the batch handed to the model, their layouts, each dynamic axis's
    /// longest among them, and their rows in all.
    /// </summary>
    internal sealed record BatchGroup(int[] Indices, RequestLayout[] Layouts, Dictionary<string, long> Padded, long TotalRows);
}
