using System.Numerics;

namespace StreamInfer.Grains.Models.Decoding;

/// <summary>
/// One decoder's key/value cache arrays, kept for the next sequence when one leaves, up to the model's cache budget.
/// <para>
/// Why not <see cref="System.Buffers.ArrayPool{T}.Shared"/>: a layer's cache is a large-object-heap array (128 KiB for
/// tiny-lm), sequences leave in bursts, and the shared pool keeps only a few arrays per size per core and empties itself
/// on memory pressure, so many rents miss it and every miss is a new large array, paid for in gen2 collections that
/// hold up a step's tokens. Here every array a leaving sequence frees is kept, as long as the arrays in use and those
/// kept stay within <see cref="BudgetBytes"/>, which admission already bounds the ones in use by.
/// </para>
/// </summary>
public sealed class KvCachePool(long budgetBytes)
{
    private readonly object _lock = new();
    private readonly Dictionary<int, Stack<float[]>> _free = [];
    private long _liveBytes;
    private long _freeBytes;

    /// <summary>The most bytes of arrays in use and kept together; beyond it, returned arrays are left to the GC.</summary>
    public long BudgetBytes { get; } = budgetBytes;

    /// <summary>Bytes of arrays handed out and not returned.</summary>
    public long LiveBytes
    {
        get
        {
            lock (_lock)
            {
                return _liveBytes;
            }
        }
    }

    /// <summary>Bytes of arrays kept for reuse.</summary>
    public long FreeBytes
    {
        get
        {
            lock (_lock)
            {
                return _freeBytes;
            }
        }
    }

    /// <summary>The length of the array <see cref="Rent"/> hands out for <paramref name="minimumLength"/> floats: the next
    /// power of two, so that sequences of nearby lengths share arrays.</summary>
    public static long ArrayLength(long minimumLength) => (long)BitOperations.RoundUpToPowerOf2((ulong)Math.Max(1, minimumLength));

    /// <summary>An array of at least <paramref name="minimumLength"/> floats (exactly <see cref="ArrayLength"/>);
    /// its contents are whatever the last user left.</summary>
    public float[] Rent(int minimumLength)
    {
        var length = (int)ArrayLength(minimumLength);
        var bytes = (long)length * sizeof(float);
        lock (_lock)
        {
            _liveBytes += bytes;
            if (_free.TryGetValue(length, out var stack) && stack.TryPop(out var kept))
            {
                _freeBytes -= bytes;
                return kept;
            }
        }

        return GC.AllocateUninitializedArray<float>(length);
    }

    /// <summary>Takes back an array from <see cref="Rent"/>; the caller must not touch it afterwards.</summary>
    public void Return(float[] array)
    {
        var bytes = (long)array.Length * sizeof(float);
        lock (_lock)
        {
            _liveBytes -= bytes;
            if (_liveBytes + _freeBytes + bytes > BudgetBytes)
            {
                return;
            }

            if (!_free.TryGetValue(array.Length, out var stack))
            {
                _free[array.Length] = stack = new Stack<float[]>();
            }

            stack.Push(array);
            _freeBytes += bytes;
        }
    }
}
