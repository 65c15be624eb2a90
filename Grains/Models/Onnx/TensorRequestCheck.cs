using System.Globalization;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// Checks a request against a tensor model's inputs at admission: its payload within the model's byte limit, names,
/// element types, ranks, fixed sizes, dynamic axes within their maximum and of one name agreeing across inputs, rows
/// within the largest batch, and the bytes it takes once staged within the batch byte cap. Thread-safe: it only reads
/// the signature.
/// </summary>
internal sealed class TensorRequestCheck
{
    private readonly string _name;
    private readonly TensorSignature _signature;
    private readonly int _maxBatchSize;
    private readonly long? _maxRequestBytes;
    private readonly long _maxBatchBytes;
    private readonly string[] _inputNames;
    private readonly string _expected;

    public TensorRequestCheck(string name, TensorSignature signature, int maxBatchSize, long? maxRequestBytes, long maxBatchBytes)
    {
        _name = name;
        _signature = signature;
        _maxBatchSize = maxBatchSize;
        _maxRequestBytes = maxRequestBytes;
        _maxBatchBytes = maxBatchBytes;
        _inputNames = [.. signature.Inputs.Select(i => i.Name)];
        _expected = string.Join(", ", signature.Inputs.Where((_, i) => signature.Sequence?.Feeds(i) != true).Select(i => $"{i.Name} {i.Type.ToWire()}{Shape(i)}"));
    }

    /// <summary>The verdict on one request: an error naming the input and the mismatch, or how many rows it fills.</summary>
    public RequestCheck Check(InferRequest request)
    {
        if (request.Inputs.IsDefaultOrEmpty)
        {
            return RequestCheck.Invalid($"model '{_name}' takes input tensors ({_expected}); none were given.");
        }

        if (RequestSize.Check(_name, request, _maxRequestBytes) is { } tooLarge)
        {
            return new RequestCheck(tooLarge, 0);
        }

        bool? batched = null;
        long rows = 0;
        Dictionary<string, (long Size, string Input)>? axes = null;
        foreach (var input in request.Inputs)
        {
            var index = Array.IndexOf(_inputNames, input.Name);
            if (index < 0)
            {
                return RequestCheck.Invalid($"input '{input.Name}': model '{_name}' has no such input (it takes {_expected}).");
            }

            if (_signature.Sequence?.Feeds(index) == true)
            {
                return RequestCheck.Invalid($"input '{input.Name}': model '{_name}' keeps it itself (a sequence's state or flag); a request does not send it.");
            }

            var slot = _signature.Inputs[index];
            var tensor = input.Tensor;
            if (tensor.ElementType != slot.Type)
            {
                return RequestCheck.Invalid($"input '{input.Name}': expected {slot.Type.ToWire()}, got {tensor.ElementType.ToWire()}.");
            }

            var rank = tensor.Shape.Length;
            if (slot.Shared)
            {
                if (rank != slot.Rank || !tensor.Shape.AsSpan().SequenceEqual(slot.Dims))
                {
                    return RequestCheck.Invalid($"input '{input.Name}': expected shape {Shape(slot)} (shared by the whole batch), got [{string.Join(',', tensor.Shape)}].");
                }
            }
            else
            {
                var isBatched = rank == slot.Rank;
                if (!isBatched && rank != slot.Rank - 1)
                {
                    return RequestCheck.Invalid($"input '{input.Name}': expected shape {Shape(slot)} (or without its batch axis), got [{string.Join(',', tensor.Shape)}].");
                }

                if (batched is { } b && b != isBatched)
                {
                    return RequestCheck.Invalid($"input '{input.Name}': every input must either include the batch axis or leave it out; they are mixed.");
                }

                batched = isBatched;
                var inputRows = isBatched ? tensor.Shape[slot.BatchAxis] : 1;
                if (inputRows < 1 || inputRows > _maxBatchSize)
                {
                    return RequestCheck.Invalid($"input '{input.Name}': the batch axis is {inputRows}; model '{_name}' takes 1 to {_maxBatchSize} rows per request.");
                }

                if (rows != 0 && inputRows != rows)
                {
                    return RequestCheck.Invalid($"input '{input.Name}': has {inputRows} rows where other inputs have {rows}.");
                }

                rows = inputRows;
                for (var k = 0; k < slot.Rank; k++)
                {
                    if (!slot.IsOwnAxis(k))
                    {
                        continue;
                    }

                    var actual = tensor.Shape[slot.RequestAxis(k, isBatched)];
                    if (slot.Dims[k] >= 0 && actual != slot.Dims[k])
                    {
                        return RequestCheck.Invalid($"input '{input.Name}': axis {k} must be {slot.Dims[k]}, got {actual} (expected {Shape(slot)}, got [{string.Join(',', tensor.Shape)}]).");
                    }

                    if (slot.Dims[k] < 0)
                    {
                        if (actual < 1)
                        {
                            return RequestCheck.Invalid($"input '{input.Name}': dynamic axis {k} ('{slot.Axes[k]}') must be at least 1, got {actual}.");
                        }

                        if (_signature.AxisMax.TryGetValue(slot.Axes[k]!, out var max) && actual > max)
                        {
                            return RequestCheck.Invalid($"input '{input.Name}': axis '{slot.Axes[k]}' is {actual}; model '{_name}' takes at most {max}.");
                        }

                        axes ??= new Dictionary<string, (long, string)>(StringComparer.Ordinal);
                        if (axes.TryGetValue(slot.Axes[k]!, out var seen) && seen.Size != actual)
                        {
                            return RequestCheck.Invalid($"input '{input.Name}': axis '{slot.Axes[k]}' is {actual}, but it is {seen.Size} in input '{seen.Input}'.");
                        }

                        axes[slot.Axes[k]!] = (actual, input.Name);
                    }
                }
            }

            if (TensorTypes.CheckConsistent(input.Name, tensor) is { } inconsistent)
            {
                return RequestCheck.Invalid(inconsistent);
            }

            for (var other = 0; other < request.Inputs.Length; other++)
            {
                if (!ReferenceEquals(request.Inputs[other], input) && request.Inputs[other].Name == input.Name)
                {
                    return RequestCheck.Invalid($"input '{input.Name}' is given more than once.");
                }
            }
        }

        for (var i = 0; i < _signature.Inputs.Length; i++)
        {
            if (i != _signature.MaskIndex && _signature.Sequence?.Feeds(i) != true && !request.Inputs.Any(t => t.Name == _inputNames[i]))
            {
                return RequestCheck.Invalid($"input '{_inputNames[i]}' is missing (model '{_name}' takes {_expected}).");
            }
        }

        if (_signature.MaskIndex is { } mask && !request.Inputs.Any(t => t.Name == _inputNames[mask]))
        {
            // The batcher builds the mask from the lengths of the other inputs' axes of the same name.
            var slot = _signature.Inputs[mask];
            for (var k = 0; k < slot.Rank; k++)
            {
                if (slot.IsOwnAxis(k) && slot.Dims[k] < 0 && (axes is null || !axes.ContainsKey(slot.Axes[k]!)))
                {
                    return RequestCheck.Invalid($"input '{slot.Name}' is missing, and its axis '{slot.Axes[k]}' appears in no other input to build it from.");
                }
            }
        }

        // What the request takes once staged (the mask built for it too), unpadded: a request past the cap would
        // pass it in any batch, and one input past what a staging buffer holds cannot be staged at all.
        var lengths = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (axis, seen) in axes ?? [])
        {
            lengths[axis] = seen.Size;
        }

        rows = Math.Max(rows, 1);
        var (total, largest) = BatchCut.Bytes(_signature, rows, lengths);
        if (total > _maxBatchBytes)
        {
            return new RequestCheck(new InferError(ErrorCode.PayloadTooLarge, $"the request's inputs take {total} bytes as the model stages them; model '{_name}' runs batches of at most {_maxBatchBytes} bytes (max_batch_bytes)."), 0);
        }

        if (largest > PinnedBuffer.MaxBytes)
        {
            return new RequestCheck(new InferError(ErrorCode.PayloadTooLarge, $"one of the request's inputs takes {largest} bytes as the model stages it; model '{_name}' stages at most {PinnedBuffer.MaxBytes} bytes per input."), 0);
        }

        return new RequestCheck(null, (int)rows);
    }

    private static string Shape(TensorSlot slot)
        => $"[{string.Join(',', slot.Dims.Select((d, k) => !slot.IsOwnAxis(k) ? "batch" : d >= 0 ? d.ToString(CultureInfo.InvariantCulture) : slot.Axes[k]!))}]";
}
