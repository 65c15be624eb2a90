using Microsoft.ML.OnnxRuntime;
using static StreamInfer.Grains.Models.Onnx.TensorBatch;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// Moves stateful sequences' states between their own buffers and a batch's tensors, along each tensor's batch axis: a
/// row's state is the elements at that row's index of the batch axis, in row-major order. Copies only, no allocation.
/// Device thread only.
/// </summary>
internal static class StateTransfer
{
    /// <summary>Copies a row's state, or the pair's initial values when <paramref name="state"/> is null, into its place
    /// in a batch's state input of <paramref name="shape"/>.</summary>
    public static void Gather(Span<byte> target, long[] shape, int batchAxis, long row, StatePair pair, byte[]? state)
    {
        var (outer, inner) = Around(shape, batchAxis);
        var rows = shape[batchAxis];
        var block = (int)(inner * pair.Type.ElementSize());
        for (var o = 0L; o < outer; o++)
        {
            var into = target.Slice((int)(((o * rows) + row) * block), block);
            if (state is null)
            {
                Fill(into, pair.Initial);
            }
            else
            {
                state.AsSpan((int)(o * block), block).CopyTo(into);
            }
        }
    }

    /// <summary>
    /// Checks that every state output has the batch's rows and a state's size per row, then copies each row's state out
    /// into its sequence's buffers, which from now on hold its state.
    /// </summary>
    public static void Scatter(IReadOnlyList<OrtValue> outputs, TensorSignature signature, BatchGroup group)
    {
        var states = signature.Sequence!.States;
        foreach (var pair in states)
        {
            var slot = signature.Outputs[pair.Output];
            var shape = outputs[pair.Output].GetTensorTypeAndShape().Shape;
            var (outer, inner) = shape.Length > slot.BatchAxis ? Around(shape, slot.BatchAxis) : (0, 0);
            if (outer * inner != pair.RowElements || shape[slot.BatchAxis] != group.TotalRows)
            {
                throw new InvalidOperationException($"state output '{slot.Name}' has shape [{string.Join(',', shape)}]; {group.TotalRows} rows of {pair.RowElements} elements on axis {slot.BatchAxis} were expected.");
            }
        }

        for (var p = 0; p < states.Length; p++)
        {
            var pair = states[p];
            var slot = signature.Outputs[pair.Output];
            var shape = outputs[pair.Output].GetTensorTypeAndShape().Shape;
            var (outer, inner) = Around(shape, slot.BatchAxis);
            var rows = shape[slot.BatchAxis];
            var block = (int)(inner * pair.Type.ElementSize());
            var raw = outputs[pair.Output].GetTensorMutableRawData();
            long row = 0;
            foreach (var layout in group.Layouts)
            {
                if (layout.State is { } state)
                {
                    for (var o = 0L; o < outer; o++)
                    {
                        raw.Slice((int)(((o * rows) + row) * block), block).CopyTo(state.Buffers[p].AsSpan((int)(o * block)));
                    }
                }

                row += layout.Rows;
            }
        }

        foreach (var layout in group.Layouts)
        {
            layout.State?.Fresh = false;
        }
    }

    /// <summary>Fills <paramref name="into"/> with copies of one element.</summary>
    public static void Fill(Span<byte> into, byte[] element)
    {
        if (!element.AsSpan().ContainsAnyExcept((byte)0))
        {
            into.Clear();
            return;
        }

        for (var at = 0; at < into.Length; at += element.Length)
        {
            element.CopyTo(into[at..]);
        }
    }

    /// <summary>The elements before the batch axis (over all axes before it) and after it, per row.</summary>
    private static (long Outer, long Inner) Around(long[] shape, int batchAxis)
    {
        long outer = 1, inner = 1;
        for (var k = 0; k < shape.Length; k++)
        {
            if (k < batchAxis)
            {
                outer *= shape[k];
            }
            else if (k > batchAxis)
            {
                inner *= shape[k];
            }
        }

        return (outer, inner);
    }
}
