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
    /// The groups of a whole batch: first its requests by the values of their shared inputs (in the order each value
    /// first appears) and, for a stateful model with no mask input, by their dynamic axis lengths, then each of those as
    /// <see cref="Cut"/> cuts it.
    /// </summary>
    public static List<int[]> CutAll(TensorSignature signature, RequestLayout[] layouts, long maxBatchBytes)
    {
        // Without a mask a model cannot tell padding from data, and a sequence's state would advance through the zeros.
        var unpadded = signature.Sequence is not null && signature.MaskIndex is null;
        var classes = ByClass(signature, layouts, unpadded);
        if (classes is null)
        {
            return Cut(signature, layouts, maxBatchBytes);
        }

        var groups = new List<int[]>();
        foreach (var members in classes)
        {
            foreach (var group in Cut(signature, [.. members.Select(j => layouts[j])], maxBatchBytes))
            {
                groups.Add([.. group.Select(g => members[g])]);
            }
        }

        return groups;
    }

    /// <summary>The requests split by the values of their shared inputs, and with <paramref name="byAxes"/> by their
    /// dynamic axis lengths, in batch order; null when they all agree.</summary>
    private static List<List<int>>? ByClass(TensorSignature signature, RequestLayout[] layouts, bool byAxes)
    {
        List<List<int>>? classes = null;
        for (var j = 1; j < layouts.Length && classes is null; j++)
        {
            if (!SameClass(signature, layouts[0], layouts[j], byAxes))
            {
                classes = [];
            }
        }

        if (classes is null)
        {
            return null;
        }

        for (var j = 0; j < layouts.Length; j++)
        {
            var found = classes.Find(c => SameClass(signature, layouts[c[0]], layouts[j], byAxes));
            if (found is null)
            {
                classes.Add([j]);
            }
            else
            {
                found.Add(j);
            }
        }

        return classes;
    }

    private static bool SameClass(TensorSignature signature, RequestLayout a, RequestLayout b, bool byAxes)
    {
        if (byAxes && !SameAxes(a.Axes, b.Axes))
        {
            return false;
        }

        for (var i = 0; i < signature.Inputs.Length; i++)
        {
            if (signature.Inputs[i].Shared && a.Inputs[i] is { } x && b.Inputs[i] is { } y
                && !(x.Tensor.Data.Span.SequenceEqual(y.Tensor.Data.Span) && x.Tensor.Strings.AsSpan().SequenceEqual(y.Tensor.Strings.AsSpan())))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The groups, each its requests' indices into <paramref name="layouts"/> in batch order; groups ordered by their
    /// smallest request.
    /// </summary>
    public static List<int[]> Cut(TensorSignature signature, RequestLayout[] layouts, long maxBatchBytes)
    {
        var own = new long[layouts.Length];
        var alike = true;
        long rows = 0;
        for (var j = 0; j < layouts.Length; j++)
        {
            own[j] = Bytes(signature, layouts[j].Rows, layouts[j].Axes).Total;
            rows += layouts[j].Rows;
            alike &= SameAxes(layouts[j].Axes, layouts[0].Axes);
        }

        // Requests of one shape (every request, for a model without dynamic axes) are not padded: only the cap can cut.
        if (layouts.Length == 1 || (alike && Fits(Bytes(signature, rows, layouts[0].Axes), maxBatchBytes)))
        {
            return [[.. Enumerable.Range(0, layouts.Length)]];
        }

        var groups = new List<int[]>();
        var order = Enumerable.Range(0, layouts.Length).OrderBy(j => (double)own[j] / Math.Max(layouts[j].Rows, 1)).ToArray();
        var current = new List<int>();
        var padded = new Dictionary<string, long>(StringComparer.Ordinal);
        var merged = new Dictionary<string, long>(StringComparer.Ordinal);
        long useful = 0;
        rows = 0;
        foreach (var j in order)
        {
            merged.Clear();
            foreach (var (axis, size) in padded)
            {
                merged[axis] = size;
            }

            foreach (var (axis, size) in layouts[j].Axes)
            {
                merged[axis] = Math.Max(merged.GetValueOrDefault(axis), size);
            }

            var bytes = Bytes(signature, rows + layouts[j].Rows, merged);
            var waste = bytes.Total - Add(useful, own[j]);
            if (current.Count > 0 && (!Fits(bytes, maxBatchBytes) || (waste > WasteFloorBytes && waste > WasteShare * bytes.Total)))
            {
                groups.Add([.. current.Order()]);
                current.Clear();
                merged.Clear();
                foreach (var (axis, size) in layouts[j].Axes)
                {
                    merged[axis] = size;
                }

                rows = 0;
                useful = 0;
            }

            current.Add(j);
            (padded, merged) = (merged, padded);
            rows += layouts[j].Rows;
            useful = Add(useful, own[j]);
        }

        groups.Add([.. current.Order()]);
        return groups;
    }

    private static bool Fits((long Total, long Largest) bytes, long maxBatchBytes)
        => bytes.Total <= maxBatchBytes && bytes.Largest <= PinnedBuffer.MaxBytes;

    private static bool SameAxes(Dictionary<string, long> a, Dictionary<string, long> b)
    {
        if (a.Count != b.Count)
        {
            return false;
        }

        foreach (var (axis, size) in a)
        {
            if (!b.TryGetValue(axis, out var other) || other != size)
            {
                return false;
            }
        }

        return true;
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
        // A shared input is fed once, whatever the rows.
        var bytes = Multiply(slot.Shared ? 1 : rows, slot.Type == TensorElementType.String ? 8 : slot.Type.ElementSize());
        for (var k = 0; k < slot.Rank; k++)
        {
            if (slot.IsOwnAxis(k))
            {
                bytes = Multiply(bytes, slot.Dims[k] >= 0 ? slot.Dims[k] : axes.GetValueOrDefault(slot.Axes[k]!, 1));
            }
        }

        return bytes;
    }

    private static long Multiply(long a, long b) => a == 0 || b <= long.MaxValue / a ? a * b : long.MaxValue;

    private static long Add(long a, long b) => a <= long.MaxValue - b ? a + b : long.MaxValue;
}
