using System.Numerics;
using System.Runtime.InteropServices;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// A pinned staging buffer that ONNX Runtime reads a batch input from without a copy. It grows (to the next power of
/// two) when a batch needs more and is otherwise reused, so steady-state batches allocate no input memory.
/// </summary>
internal sealed class PinnedBuffer
{
    private byte[] _array = [];

    /// <summary>The address of the pinned array; valid until the next <see cref="Get"/> that grows it.</summary>
    // Allocated on the pinned object heap: the address is stable for the array's lifetime.
    public IntPtr Address => Marshal.UnsafeAddrOfPinnedArrayElement(_array, 0);

    /// <summary>A buffer of at least <paramref name="bytes"/> bytes.</summary>
    public byte[] Get(long bytes)
    {
        if (_array.LongLength < bytes)
        {
            var size = (long)BitOperations.RoundUpToPowerOf2((ulong)Math.Max(bytes, 256));
            _array = GC.AllocateUninitializedArray<byte>(checked((int)size), pinned: true);
        }

        return _array;
    }

    /// <summary>Drops the buffer.</summary>
    public void Release() => _array = [];
}
