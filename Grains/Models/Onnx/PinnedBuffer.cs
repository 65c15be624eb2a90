using System.Numerics;
using System.Runtime.InteropServices;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// A pinned staging buffer that ONNX Runtime reads a batch input from without a copy. It grows (to the next power of
/// two) when a batch needs more and is otherwise reused, so steady-state batches allocate no input memory. After each
/// batch <see cref="Trim"/> lets go of a buffer far larger than the recent batches need, so one rare large batch does
/// not hold its memory for good.
/// </summary>
internal sealed class PinnedBuffer
{
    /// <summary>The most one staging buffer holds: the largest byte array .NET allocates.</summary>
    public static readonly long MaxBytes = Array.MaxLength;

    // Below this a buffer is kept whatever the recent needs: reallocating it would cost more than it frees.
    private const long KeepAlways = 1 << 20;

    // A batch that needs more than this many times the recent batches' most is a spike: its buffer goes after it.
    private const int SpikeFactor = 4;

    // How many recent batches' needs are remembered.
    private const int Window = 16;

    private readonly long[] _recent = new long[Window];
    private int _next;
    private byte[] _array = [];

    /// <summary>The address of the pinned array; valid until the next <see cref="Get"/> that grows it.</summary>
    // Allocated on the pinned object heap: the address is stable for the array's lifetime.
    public IntPtr Address => Marshal.UnsafeAddrOfPinnedArrayElement(_array, 0);

    /// <summary>The bytes held now.</summary>
    public long Capacity => _array.LongLength;

    /// <summary>A buffer of at least <paramref name="bytes"/> bytes.</summary>
    /// <exception cref="InvalidOperationException">More than <see cref="MaxBytes"/> is asked for.</exception>
    public byte[] Get(long bytes)
    {
        if (bytes > MaxBytes)
        {
            throw new InvalidOperationException($"a batch input of {bytes} bytes is past the most one staging buffer holds ({MaxBytes} bytes).");
        }

        if (_array.LongLength < bytes)
        {
            var size = Math.Min((long)BitOperations.RoundUpToPowerOf2((ulong)Math.Max(bytes, 256)), MaxBytes);
            // Drop the old array first, so that both are not held at once.
            _array = [];
            _array = GC.AllocateUninitializedArray<byte>((int)size, pinned: true);
        }

        return _array;
    }

    /// <summary>
    /// Records that a batch needed <paramref name="bytes"/>, once it has run, and lets go of the buffer when it is far
    /// larger than recent batches need: after a spike (a batch needing more than four times the most of the recent
    /// ones), or once the recent batches all needed less than a quarter of it. The next <see cref="Get"/> allocates
    /// afresh.
    /// </summary>
    public void Trim(long bytes)
    {
        var before = Recent();
        _recent[_next] = bytes;
        _next = (_next + 1) % Window;
        var keep = before > 0 && bytes > SpikeFactor * before ? before : Recent();
        if (_array.LongLength > KeepAlways && _array.LongLength > SpikeFactor * Math.Max(keep, 1))
        {
            _array = [];
        }
    }

    private long Recent()
    {
        var most = 0L;
        foreach (var need in _recent)
        {
            most = Math.Max(most, need);
        }

        return most;
    }

    /// <summary>Drops the buffer.</summary>
    public void Release() => _array = [];
}
