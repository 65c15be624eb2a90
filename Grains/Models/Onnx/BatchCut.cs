using static StreamInfer.Grains.Models.Onnx.TensorBatch;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// Cuts a batch into the groups that run together, so that padding cannot be abused: requests are taken from the
/// smallest (bytes per row) up, and the next one starts a new group when adding it would make the group's padded input
/// bytes pass the batch cap (or one input pass what a staging buffer holds), or when more than half of the group would
/// then be padding and that padding is more than <see cref="WasteFloorBytes"/>. One long request among short ones so
/// runs in a group of its own instead of padding them all to its length; requests of like lengths stay together.
/// </summary>
internal static class BatchCut
{
    /// <summary>The share of a group's padded bytes that may be padding before a request is cut off into a new group.</summary>
    public const double WasteShare = 0.5;

    /// <summary>
    /// Padding below this many bytes never cuts: a second run's fixed cost is more than what padding so little costs.
    /// </summary>
    public const long WasteFloorBytes = 64 << 10;

    /// <summary>
    /// The groups, each its requests' indices into <paramref name="layouts"/> in batch order; groups ordered by their
    /// smallest request.
    /// </summary>
    public static List<int[]> Cut(TensorSignature signature, RequestLayout[] layouts, long maxBatchBytes)
    {
        var groups = new List<int[]>();
        if (layouts.Length == 1)
        {
            groups.Add([0]);
            return groups;
        }

        var own = new long[layouts.Length];
        var perRow = new double[layouts.Length];
        for (var j = 0; j < layouts.Length; j++)
        {
            own[j] = Bytes(signature, layouts[j].Rows, layouts[j].Axes).Total;
            perRow[j] = (double)own[j] / Math.Max(layouts[j].Rows, 1);
        }

        var order = Enumerable.Range(0, layouts.Length).OrderBy(j => perRow[j]).ToArray();
        var current = new List<int> { order[0] };
        var padded = new Dictionary<string, long>(layouts[order[0]].Axes, StringComparer.Ordinal);
        var rows = layouts[order[0]].Rows;
        var useful = own[order[0]];
        for (var n = 1; n < order.Length; n++)
        {
            var j = order[n];
            var merged = new Dictionary<string, long>(padded, StringComparer.Ordinal);
            foreach (var (axis, size) in layouts[j].Axes)
            {
                merged[axis] = Math.Max(merged.GetValueOrDefault(axis), size);
            }

            var (total, largest) = Bytes(signature, rows + layouts[j].Rows, merged);
            var waste = total - Add(useful, own[j]);
            var cut = total > maxBatchBytes
                || largest > PinnedBuffer.MaxBytes
                || (waste > WasteFloorBytes && waste > WasteShare * total);
            if (cut)
            {
                groups.Add([.. current.Order()]);
                current.Clear();
                merged = new Dictionary<string, long>(layouts[j].Axes, StringComparer.Ordinal);
                rows = 0;
                useful = 0;
            }

            current.Add(j);
            padded = merged;
            rows += layouts[j].Rows;
            useful = Add(useful, own[j]);
        }

        groups.Add([.. current.Order()]);
        return groups;
    }

    /// <summary>
    /// The bytes <paramref name="rows"/> rows take in every input at the given dynamic axis lengths, in all and in the
    /// largest input; string elements count 8 bytes. Saturates at <see cref="long.MaxValue"/>.
    /// </summary>
    public static (long Total, long Largest) Bytes(TensorSignature signature, long rows, IReadOnlyDictionary<string, long> axes)
    {
        long total = 0;
        long largest = 0;
        foreach (var slot in signature.Inputs)
        {
            var bytes = InputBytes(slot, rows, axes);
            total = Add(total, bytes);
            largest = Math.Max(largest, bytes);
        }

        return (total, largest);
    }

    /// <summary>The bytes <paramref name="rows"/> rows take in one input at the given dynamic axis lengths; saturates.</summary>
    public static long InputBytes(TensorSlot slot, long rows, IReadOnlyDictionary<string, long> axes)
    {
        var bytes = Multiply(rows, slot.Type == TensorElementType.String ? 8 : slot.Type.ElementSize());
        for (var k = 1; k < slot.Rank; k++)
        {
            bytes = Multiply(bytes, slot.Dims[k] >= 0 ? slot.Dims[k] : axes.GetValueOrDefault(slot.Axes[k]!, 1));
        }

        return bytes;
    }

    private static long Multiply(long a, long b) => a == 0 || b <= long.MaxValue / a ? a * b : long.MaxValue;

    private static long Add(long a, long b) => a <= long.MaxValue - b ? a + b : long.MaxValue;
}
