namespace StreamInfer.Grains.Models.Onnx;

/// <summary>A contiguous stretch of elements shared by a request's own tensor and the batch tensor it sits in.</summary>
internal readonly record struct Run(long Small, long Big, long Length);

/// <summary>
/// Maps a request's tensor (the small shape) into its place in a padded batch tensor (the big shape): the request's
/// rows start at a row offset along the batch axis, and along every other axis it occupies the low indices. Yields the
/// contiguous runs to copy, so that an unpadded batch on the first axis is one copy per request.
/// </summary>
internal static class Runs
{
    /// <summary>Fills <paramref name="into"/> with the runs of <paramref name="small"/> inside <paramref name="big"/> at
    /// <paramref name="rowOffset"/> along <paramref name="batchAxis"/>.</summary>
    public static void Collect(long[] small, long[] big, long rowOffset, List<Run> into, int batchAxis = 0)
    {
        into.Clear();
        var rank = small.Length;
        if (rank == 0)
        {
            into.Add(new Run(0, 0, 1));
            return;
        }

        // The last axis where the shapes differ, or where the request's rows sit at an offset; past it both are laid out
        // alike, so the run spans that axis whole.
        var m = Math.Max(batchAxis, 0);
        for (var k = rank - 1; k > m; k--)
        {
            if (small[k] != big[k])
            {
                m = k;
                break;
            }
        }

        var inner = 1L;
        for (var k = m + 1; k < rank; k++)
        {
            inner *= small[k];
        }

        var smallStride = new long[rank];
        var bigStride = new long[rank];
        smallStride[rank - 1] = 1;
        bigStride[rank - 1] = 1;
        for (var k = rank - 2; k >= 0; k--)
        {
            smallStride[k] = smallStride[k + 1] * small[k + 1];
            bigStride[k] = bigStride[k + 1] * big[k + 1];
        }

        var length = small[m] * inner;
        if (length == 0)
        {
            return;
        }

        // Walk every index of axes 0..m-1 (the batch axis offset by the request's first row).
        var index = new long[m];
        var offset = batchAxis >= 0 ? rowOffset * bigStride[batchAxis] : 0;
        while (true)
        {
            long s = 0;
            long b = offset;
            for (var k = 0; k < m; k++)
            {
                s += index[k] * smallStride[k];
                b += index[k] * bigStride[k];
            }

            into.Add(new Run(s, b, length));
            var axis = m - 1;
            while (axis >= 0 && ++index[axis] == small[axis])
            {
                index[axis] = 0;
                axis--;
            }

            if (axis < 0)
            {
                return;
            }
        }
    }
}
