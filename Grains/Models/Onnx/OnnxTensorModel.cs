using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Repository;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// A <c>tensor</c> model on one device: one ONNX Runtime session, created once and reused. A batch stacks its requests
/// along the first axis; where they differ along a dynamic axis they are padded with zeros to the batch's longest, the
/// mask input (if configured) is 1 over each request's own positions and 0 over padding, and outputs are split back per
/// request and cut to each request's own lengths. Staging buffers for the inputs are pinned, kept per input and grown to
/// the largest batch seen, so a batch allocates no input memory.
/// </summary>
internal sealed class OnnxTensorModel : IBatchModel
{
    private readonly InferenceSession _session;
    private readonly TensorSignature _signature;
    private readonly ModelOptions _options;
    private readonly RunOptions _runOptions = new();
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly PinnedBuffer[] _staging;
    private readonly string _expected;
    private readonly IReadOnlyDictionary<string, long>? _warmupDims;

    // Scratch for the copy plan; Run is only ever called on the device's own thread.
    private readonly List<Run> _runs = [];
    private int _disposed;

    private OnnxTensorModel(ModelDefinition definition, InferenceSession session, TensorSignature signature)
    {
        Name = definition.Name;
        Version = definition.Version;
        _session = session;
        _signature = signature;
        _options = definition.Options;
        _warmupDims = definition.Config.WarmupDims;
        _inputNames = [.. signature.Inputs.Select(i => i.Name)];
        _outputNames = [.. signature.Outputs.Select(o => o.Name)];
        _staging = [.. signature.Inputs.Select(_ => new PinnedBuffer())];
        Inputs = [.. signature.Inputs.Select(i => i.ToSpec())];
        Outputs = [.. signature.Outputs.Select(o => o.ToSpec())];
        _expected = string.Join(", ", signature.Inputs.Select(i => $"{i.Name} {i.Type.ToWire()}{Shape(i.Dims, i.Axes)}"));
    }

    public string Name { get; }

    public string Version { get; }

    public ImmutableArray<TensorSpec> Inputs { get; }

    public ImmutableArray<TensorSpec> Outputs { get; }

    public double WarmBatchMs { get; private set; }

    /// <summary>
    /// Creates the session and checks the model against its config. Returns null, with the reasons in
    /// <paramref name="errors"/>, when the file is unreadable or disagrees with the config.
    /// </summary>
    public static OnnxTensorModel? Load(ModelDefinition definition, SessionOptions sessionOptions, List<ModelLoadError> errors)
    {
        InferenceSession session;
        try
        {
            session = new InferenceSession(definition.OnnxPath!, sessionOptions);
        }
        catch (OnnxRuntimeException ex)
        {
            errors.Add(new ModelLoadError(definition.Name, definition.OnnxFile, null, $"ONNX Runtime cannot load it: {ex.Message.Trim()}"));
            return null;
        }

        var signature = TensorSignature.Build(session, definition, errors);
        if (signature is null)
        {
            session.Dispose();
            return null;
        }

        return new OnnxTensorModel(definition, session, signature);
    }

    /// <summary>
    /// Runs the model at <paramref name="batchSize"/> rows (dynamic axes at their <c>warmup_dims</c> size, or 1), and
    /// checks that every output carries the batch on its first axis. Returns an error message, or null. Device thread only.
    /// </summary>
    public string? WarmUp(int batchSize)
    {
        var inputs = ImmutableArray.CreateBuilder<NamedTensor>();
        foreach (var slot in _signature.Inputs)
        {
            var shape = ImmutableArray.CreateBuilder<long>(slot.Rank);
            shape.Add(batchSize);
            for (var k = 1; k < slot.Rank; k++)
            {
                shape.Add(slot.Dims[k] >= 0 ? slot.Dims[k] : _warmupDims?.GetValueOrDefault(slot.Axes[k]!, 1) ?? 1);
            }

            var count = shape.Aggregate(1L, (a, b) => a * b);
            var tensor = slot.Type == TensorElementType.String
                ? new Tensor(slot.Type, shape.ToImmutable(), [], [.. Enumerable.Repeat(string.Empty, (int)count)])
                : new Tensor(slot.Type, shape.ToImmutable(), new byte[count * slot.Type.ElementSize()], []);
            inputs.Add(new NamedTensor(slot.Name, tensor));
        }

        var request = new InferRequest("warmup", Name, inputs.ToImmutable(), null, null, string.Empty);
        var started = Stopwatch.GetTimestamp();
        try
        {
            if (Run([request])[0].Error is { } error)
            {
                return $"warm-up at batch size {batchSize} failed: {error.Message}";
            }
        }
        catch (Exception ex) when (ex is OnnxRuntimeException or InvalidOperationException)
        {
            return $"warm-up at batch size {batchSize} failed: {ex.Message.Trim()}";
        }

        WarmBatchMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        return null;
    }

    public RequestCheck Check(InferRequest request)
    {
        if (request.Inputs.IsDefaultOrEmpty)
        {
            return RequestCheck.Invalid($"model '{Name}' takes input tensors ({_expected}); none were given.");
        }

        bool? batched = null;
        long rows = 0;
        Dictionary<string, (long Size, string Input)>? axes = null;
        foreach (var input in request.Inputs)
        {
            var index = Array.IndexOf(_inputNames, input.Name);
            if (index < 0)
            {
                return RequestCheck.Invalid($"input '{input.Name}': model '{Name}' has no such input (it takes {_expected}).");
            }

            var slot = _signature.Inputs[index];
            var tensor = input.Tensor;
            if (tensor.ElementType != slot.Type)
            {
                return RequestCheck.Invalid($"input '{input.Name}': expected {slot.Type.ToWire()}, got {tensor.ElementType.ToWire()}.");
            }

            var rank = tensor.Shape.Length;
            var isBatched = rank == slot.Rank;
            if (!isBatched && rank != slot.Rank - 1)
            {
                return RequestCheck.Invalid($"input '{input.Name}': expected shape {Shape(slot.Dims, slot.Axes)} (or without its batch axis), got [{string.Join(',', tensor.Shape)}].");
            }

            if (batched is { } b && b != isBatched)
            {
                return RequestCheck.Invalid($"input '{input.Name}': every input must either include the batch axis or leave it out; they are mixed.");
            }

            batched = isBatched;
            var offset = isBatched ? 0 : 1;
            var inputRows = isBatched ? tensor.Shape[0] : 1;
            if (inputRows < 1 || inputRows > _options.MaxBatchSize)
            {
                return RequestCheck.Invalid($"input '{input.Name}': the batch axis is {inputRows}; model '{Name}' takes 1 to {_options.MaxBatchSize} rows per request.");
            }

            if (rows != 0 && inputRows != rows)
            {
                return RequestCheck.Invalid($"input '{input.Name}': has {inputRows} rows where other inputs have {rows}.");
            }

            rows = inputRows;
            for (var k = 1; k < slot.Rank; k++)
            {
                var actual = tensor.Shape[k - offset];
                if (slot.Dims[k] >= 0 && actual != slot.Dims[k])
                {
                    return RequestCheck.Invalid($"input '{input.Name}': axis {k} must be {slot.Dims[k]}, got {actual} (expected {Shape(slot.Dims, slot.Axes)}, got [{string.Join(',', tensor.Shape)}]).");
                }

                if (slot.Dims[k] < 0)
                {
                    if (actual < 1)
                    {
                        return RequestCheck.Invalid($"input '{input.Name}': dynamic axis {k} ('{slot.Axes[k]}') must be at least 1, got {actual}.");
                    }

                    axes ??= new Dictionary<string, (long, string)>(StringComparer.Ordinal);
                    if (axes.TryGetValue(slot.Axes[k]!, out var seen) && seen.Size != actual)
                    {
                        return RequestCheck.Invalid($"input '{input.Name}': axis '{slot.Axes[k]}' is {actual}, but it is {seen.Size} in input '{seen.Input}'.");
                    }

                    axes[slot.Axes[k]!] = (actual, input.Name);
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
            if (i != _signature.MaskIndex && !request.Inputs.Any(t => t.Name == _inputNames[i]))
            {
                return RequestCheck.Invalid($"input '{_inputNames[i]}' is missing (model '{Name}' takes {_expected}).");
            }
        }

        if (_signature.MaskIndex is { } mask && !request.Inputs.Any(t => t.Name == _inputNames[mask]))
        {
            // The batcher builds the mask from the lengths of the other inputs' axes of the same name.
            var slot = _signature.Inputs[mask];
            for (var k = 1; k < slot.Rank; k++)
            {
                if (slot.Dims[k] < 0 && (axes is null || !axes.ContainsKey(slot.Axes[k]!)))
                {
                    return RequestCheck.Invalid($"input '{slot.Name}' is missing, and its axis '{slot.Axes[k]}' appears in no other input to build it from.");
                }
            }
        }

        return new RequestCheck(null, (int)rows);
    }

    public IReadOnlyList<ItemOutcome> Run(IReadOnlyList<InferRequest> batch)
    {
        try
        {
            return RunBatch(batch);
        }
        catch (OnnxRuntimeException ex)
        {
            // What passed Check can still fail on its values (an index out of range, say). Run each request alone, so
            // that the one at fault gets the error and its batch-mates their results.
            if (batch.Count == 1)
            {
                return [ItemOutcome.Failed(new InferError(ErrorCode.InvalidInput, $"model '{Name}' could not run the request: {ex.Message.Trim()}"))];
            }

            var outcomes = new ItemOutcome[batch.Count];
            for (var j = 0; j < batch.Count; j++)
            {
                outcomes[j] = Run([batch[j]])[0];
            }

            return outcomes;
        }
    }

    private ItemOutcome[] RunBatch(IReadOnlyList<InferRequest> batch)
    {
        var n = batch.Count;
        var layouts = new RequestLayout[n];
        var padded = new Dictionary<string, long>(StringComparer.Ordinal);
        long totalRows = 0;
        for (var j = 0; j < n; j++)
        {
            layouts[j] = Layout(batch[j]);
            totalRows += layouts[j].Rows;
            foreach (var (axis, size) in layouts[j].Axes)
            {
                padded[axis] = Math.Max(padded.GetValueOrDefault(axis), size);
            }
        }

        var values = new OrtValue?[_signature.Inputs.Length];
        try
        {
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = Stage(i, batch, layouts, padded, totalRows);
            }

            using var outputs = _session.Run(_runOptions, _inputNames, values!, _outputNames);
            return Split(outputs, layouts, padded, totalRows);
        }
        finally
        {
            foreach (var value in values)
            {
                value?.Dispose();
            }
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _session.Dispose();
        _runOptions.Dispose();
        foreach (var buffer in _staging)
        {
            buffer.Release();
        }
    }

    private RequestLayout Layout(InferRequest request)
    {
        var first = request.Inputs[0];
        var slot = _signature.Inputs[Array.IndexOf(_inputNames, first.Name)];
        var batched = first.Tensor.Shape.Length == slot.Rank;
        var rows = batched ? first.Tensor.Shape[0] : 1;
        var axes = new Dictionary<string, long>(StringComparer.Ordinal);
        var byInput = new NamedTensor?[_signature.Inputs.Length];
        foreach (var input in request.Inputs)
        {
            var index = Array.IndexOf(_inputNames, input.Name);
            byInput[index] = input;
            var s = _signature.Inputs[index];
            for (var k = 1; k < s.Rank; k++)
            {
                if (s.Dims[k] < 0)
                {
                    axes[s.Axes[k]!] = input.Tensor.Shape[batched ? k : k - 1];
                }
            }
        }

        return new RequestLayout(rows, batched, axes, byInput);
    }

    /// <summary>Builds one input of the batch in its pinned staging buffer (or as a string tensor).</summary>
    private OrtValue Stage(int index, IReadOnlyList<InferRequest> batch, RequestLayout[] layouts, Dictionary<string, long> padded, long totalRows)
    {
        var slot = _signature.Inputs[index];
        var shape = new long[slot.Rank];
        shape[0] = totalRows;
        for (var k = 1; k < slot.Rank; k++)
        {
            shape[k] = slot.Dims[k] >= 0 ? slot.Dims[k] : padded[slot.Axes[k]!];
        }

        var rowElements = 1L;
        for (var k = 1; k < shape.Length; k++)
        {
            rowElements *= shape[k];
        }

        if (slot.Type == TensorElementType.String)
        {
            var value = OrtValue.CreateTensorWithEmptyStrings(OrtAllocator.DefaultInstance, shape);
            long rowStart = 0;
            for (var j = 0; j < batch.Count; j++)
            {
                var strings = layouts[j].Inputs[index]!.Tensor.Strings;
                Runs.Collect(OwnShape(slot, layouts[j]), shape, rowStart, _runs);
                foreach (var run in _runs)
                {
                    for (var e = 0L; e < run.Length; e++)
                    {
                        value.StringTensorSetElementAt(strings[(int)(run.Small + e)].AsSpan(), (int)(run.Big + e));
                    }
                }

                rowStart += layouts[j].Rows;
            }

            return value;
        }

        var size = slot.Type.ElementSize();
        var bytes = totalRows * rowElements * size;
        var buffer = _staging[index].Get(bytes);
        var target = buffer.AsSpan(0, (int)bytes);
        var isMask = index == _signature.MaskIndex;
        var needsClear = isMask;
        for (var j = 0; j < batch.Count && !needsClear; j++)
        {
            needsClear = !OwnShape(slot, layouts[j]).AsSpan(1).SequenceEqual(shape.AsSpan(1));
        }

        if (needsClear)
        {
            // Padding is zero: for a mask, zero marks the padded positions.
            target.Clear();
        }

        long rowOffset = 0;
        for (var j = 0; j < batch.Count; j++)
        {
            Runs.Collect(OwnShape(slot, layouts[j]), shape, rowOffset, _runs);
            if (layouts[j].Inputs[index] is { } given)
            {
                var source = given.Tensor.Data;
                foreach (var run in _runs)
                {
                    source.AsSpan((int)(run.Small * size), (int)(run.Length * size)).CopyTo(target.Slice((int)(run.Big * size)));
                }
            }
            else if (isMask)
            {
                var one = One(slot.Type);
                foreach (var run in _runs)
                {
                    for (var e = 0L; e < run.Length; e++)
                    {
                        one.CopyTo(target.Slice((int)((run.Big + e) * size)));
                    }
                }
            }

            rowOffset += layouts[j].Rows;
        }

        return OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, slot.OrtType, shape, _staging[index].Address, bytes);
    }

    private ItemOutcome[] Split(IReadOnlyList<OrtValue> outputs, RequestLayout[] layouts, Dictionary<string, long> padded, long totalRows)
    {
        var perRequest = new NamedTensor[layouts.Length][];
        for (var j = 0; j < layouts.Length; j++)
        {
            perRequest[j] = new NamedTensor[outputs.Count];
        }

        for (var o = 0; o < outputs.Count; o++)
        {
            var slot = _signature.Outputs[o];
            var value = outputs[o];
            var shape = value.GetTensorTypeAndShape().Shape;
            if (shape.Length == 0 || shape[0] != totalRows)
            {
                throw new InvalidOperationException($"output '{slot.Name}' has shape [{string.Join(',', shape)}]; a batch of {totalRows} rows needs it on the first axis.");
            }

            var strings = slot.Type == TensorElementType.String ? value.GetStringTensorAsArray() : null;
            var size = slot.Type.ElementSize();
            long rowOffset = 0;
            for (var j = 0; j < layouts.Length; j++)
            {
                var layout = layouts[j];
                var own = new long[shape.Length];
                own[0] = layout.Rows;
                for (var k = 1; k < shape.Length; k++)
                {
                    // An axis the batch padded comes back at the request's own length.
                    var axis = k < slot.Axes.Length ? slot.Axes[k] : null;
                    own[k] = axis is not null && layout.Axes.TryGetValue(axis, out var mine) && padded.TryGetValue(axis, out var max) && shape[k] == max
                        ? mine
                        : shape[k];
                }

                var count = own.Aggregate(1L, (a, b) => a * b);
                var ownShape = layout.Batched ? own.ToImmutableArray() : own.AsSpan(1).ToArray().ToImmutableArray();
                Tensor tensor;
                Runs.Collect(own, shape, rowOffset, _runs);
                if (strings is not null)
                {
                    var picked = new string[count];
                    foreach (var run in _runs)
                    {
                        Array.Copy(strings, run.Big, picked, run.Small, run.Length);
                    }

                    tensor = new Tensor(slot.Type, ownShape, [], ImmutableArray.Create(picked));
                }
                else
                {
                    var data = new byte[count * size];
                    var raw = value.GetTensorMutableRawData();
                    foreach (var run in _runs)
                    {
                        raw.Slice((int)(run.Big * size), (int)(run.Length * size)).CopyTo(data.AsSpan((int)(run.Small * size)));
                    }

                    tensor = new Tensor(slot.Type, ownShape, data, []);
                }

                perRequest[j][o] = new NamedTensor(slot.Name, tensor);
                rowOffset += layout.Rows;
            }
        }

        var outcomes = new ItemOutcome[layouts.Length];
        for (var j = 0; j < layouts.Length; j++)
        {
            outcomes[j] = ItemOutcome.Ok(ImmutableArray.Create(perRequest[j]));
        }

        return outcomes;
    }

    private static long[] OwnShape(TensorSlot slot, RequestLayout layout)
    {
        var own = new long[slot.Rank];
        own[0] = layout.Rows;
        for (var k = 1; k < slot.Rank; k++)
        {
            own[k] = slot.Dims[k] >= 0 ? slot.Dims[k] : layout.Axes[slot.Axes[k]!];
        }

        return own;
    }

    private static byte[] One(TensorElementType type)
    {
        var one = new byte[type.ElementSize()];
        switch (type)
        {
            case TensorElementType.Float32: BinaryPrimitives.WriteSingleLittleEndian(one, 1f); break;
            case TensorElementType.Float64: BinaryPrimitives.WriteDoubleLittleEndian(one, 1d); break;
            case TensorElementType.Float16: BinaryPrimitives.WriteHalfLittleEndian(one, (Half)1); break;
            default: one[0] = 1; break;
        }

        return one;
    }

    private static string Shape(long[] dims, string?[] axes)
        => $"[{string.Join(',', dims.Select((d, k) => k == 0 ? "batch" : d >= 0 ? d.ToString(System.Globalization.CultureInfo.InvariantCulture) : axes[k]!))}]";

    private sealed record RequestLayout(long Rows, bool Batched, Dictionary<string, long> Axes, NamedTensor?[] Inputs);
}
