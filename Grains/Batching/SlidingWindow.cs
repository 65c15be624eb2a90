using System.Buffers.Binary;
using System.Collections.Immutable;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// One sequence's sliding window over an output of its model (<c>sequence.window</c>): the values of its last
/// <see cref="WindowOptions.Size"/> results, their mean and maximum, and whether the sequence is on, with hysteresis
/// between the on and off thresholds. It allocates only when the sequence starts: the sum is kept running (and summed
/// afresh each time the window has turned over, so that rounding cannot build up), the maximum by a queue of the
/// positions that may still become it. Grain thread only.
/// </summary>
internal sealed class SlidingWindow
{
    private readonly WindowOptions _options;
    private readonly double[] _values;

    // Positions (counted in values taken) whose value may still be the window's maximum, oldest first, values
    // decreasing: a ring of the window's size, which can never hold more.
    private readonly long[] _candidates;
    private int _head;
    private int _candidateCount;

    private long _taken;
    private double _sum;
    private int _results;
    private bool _on;

    public SlidingWindow(WindowOptions options)
    {
        _options = options;
        _values = new double[options.Size];
        _candidates = new long[options.Size];
    }

    /// <summary>
    /// Takes one result's outputs into the window; returns the window after it, with the event it raised. A result
    /// whose value is missing (no such output or element) or not finite leaves the values as they were, but counts as
    /// a result. The last result of a sequence that is on turns it off (a client that stops streaming mid-speech
    /// still hears that speech ended); one that would only have turned it on raises nothing.
    /// </summary>
    public SequenceWindow Add(ImmutableArray<NamedTensor> outputs, bool last = false)
    {
        var index = _results++;
        if (Value(outputs) is { } value && double.IsFinite(value))
        {
            Take(value);
        }

        var count = (int)Math.Min(_taken, _values.Length);
        if (count == 0)
        {
            return new SequenceWindow(_options.Output, index, 0, 0, 0);
        }

        var mean = _sum / count;
        var max = _values[Slot(_candidates[_head])];
        string? raised = null;
        if (_options.On is { } on)
        {
            if (!_on && mean >= on)
            {
                (_on, raised) = (true, WindowEvents.On);
            }
            else if (_on && mean < _options.Off)
            {
                (_on, raised) = (false, WindowEvents.Off);
            }

            if (last && _on)
            {
                (_on, raised) = (false, raised == WindowEvents.On ? null : WindowEvents.Off);
            }
        }

        return new SequenceWindow(_options.Output, index, count, mean, max, raised);
    }

    private void Take(double value)
    {
        var size = _values.Length;
        var position = _taken++;
        var slot = Slot(position);
        if (_candidateCount > 0 && _candidates[_head] <= position - size)
        {
            // The oldest candidate leaves the window with the value this one replaces.
            _head = (_head + 1) % size;
            _candidateCount--;
        }

        var evicted = position >= size ? _values[slot] : 0;
        _values[slot] = value;
        if (slot == size - 1)
        {
            _sum = 0;
            foreach (var v in _values)
            {
                _sum += v;
            }
        }
        else
        {
            _sum += value - evicted;
        }

        // A value no larger than the new one, and older, can never be the maximum again.
        while (_candidateCount > 0 && _values[Slot(_candidates[(_head + _candidateCount - 1) % size])] <= value)
        {
            _candidateCount--;
        }

        _candidates[(_head + _candidateCount) % size] = position;
        _candidateCount++;
    }

    private int Slot(long position) => (int)(position % _values.Length);

    /// <summary>A result's value: its row's chosen element, or the mean of the row; null when it has none.</summary>
    private double? Value(ImmutableArray<NamedTensor> outputs)
    {
        foreach (var output in outputs)
        {
            if (output.Name != _options.Output)
            {
                continue;
            }

            var tensor = output.Tensor;
            var size = tensor.ElementType.ElementSize();
            var data = tensor.Data.Span;
            var elements = size == 0 ? 0 : data.Length / size;
            if (_options.Element is { } element)
            {
                return element < elements ? Read(tensor.ElementType, data.Slice(element * size, size)) : null;
            }

            if (elements == 0)
            {
                return null;
            }

            var sum = 0.0;
            for (var i = 0; i < elements; i++)
            {
                sum += Read(tensor.ElementType, data.Slice(i * size, size));
            }

            return sum / elements;
        }

        return null;
    }

    private static double Read(TensorElementType type, ReadOnlySpan<byte> e) => type switch
    {
        TensorElementType.Float32 => BinaryPrimitives.ReadSingleLittleEndian(e),
        TensorElementType.Float64 => BinaryPrimitives.ReadDoubleLittleEndian(e),
        TensorElementType.Float16 => (double)BinaryPrimitives.ReadHalfLittleEndian(e),
        TensorElementType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(e),
        TensorElementType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(e),
        TensorElementType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(e),
        TensorElementType.Int8 => unchecked((sbyte)e[0]),
        _ => e[0],
    };
}
