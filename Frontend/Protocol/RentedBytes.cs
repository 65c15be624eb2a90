using System.Buffers;

namespace StreamInfer.Frontend.Protocol;

/// <summary>
/// A request body or binary frame read into an array rented from the shared pool. The tensors parsed from it are slices
/// of it, so it may go back to the pool only once nothing reads them any more: when the grid has answered the request
/// (its batch ran, its answer was written). A request that ends without the grid's answer (a cancel, the watchdog, a
/// lost silo) may still be staged by a batch, so its buffer is left to the garbage collector instead
/// (<see cref="Abandon"/>).
/// </summary>
internal sealed class RentedBytes : IBufferWriter<byte>
{
    private byte[]? _array;

    public RentedBytes(int capacity)
    {
        _array = ArrayPool<byte>.Shared.Rent(Math.Max(capacity, 16));
    }

    /// <summary>Bytes written so far.</summary>
    public int Length { get; private set; }

    /// <summary>Bytes of the array held now (zero once returned).</summary>
    public int Capacity => Volatile.Read(ref _array)?.Length ?? 0;

    /// <summary>The bytes written.</summary>
    public ReadOnlyMemory<byte> Memory => Array.AsMemory(0, Length);

    private byte[] Array => _array ?? throw new ObjectDisposedException(nameof(RentedBytes));

    /// <summary>Room for at least <paramref name="hint"/> more bytes (at least one), growing the array if needed.</summary>
    public Memory<byte> GetMemory(int hint)
    {
        var array = Array;
        var need = Length + Math.Max(hint, 1);
        if (need > array.Length)
        {
            var grown = ArrayPool<byte>.Shared.Rent(Math.Max(need, array.Length * 2));
            array.AsSpan(0, Length).CopyTo(grown);
            ArrayPool<byte>.Shared.Return(array);
            _array = array = grown;
        }

        return array.AsMemory(Length);
    }

    /// <summary>Room for at least <paramref name="hint"/> more bytes (at least one), growing the array if needed.</summary>
    public Span<byte> GetSpan(int hint) => GetMemory(hint).Span;

    /// <summary>Records that <paramref name="count"/> bytes were written into <see cref="GetMemory"/>.</summary>
    public void Advance(int count) => Length += count;

    /// <summary>Gives the array back to the pool; nothing may read <see cref="Memory"/> after this.</summary>
    public void Return()
    {
        if (Interlocked.Exchange(ref _array, null) is { } array)
        {
            ArrayPool<byte>.Shared.Return(array);
        }
    }

    /// <summary>Lets go of the array without returning it: something may still read it, so the collector frees it.</summary>
    public void Abandon() => _array = null;
}
