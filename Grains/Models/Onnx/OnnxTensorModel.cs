using System.Collections.Immutable;
using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// A <c>tensor</c> model on one device: one ONNX Runtime session, created once and reused. Requests are checked by
/// <see cref="TensorRequestCheck"/> at admission, stacked and padded into a batch and split back by
/// <see cref="TensorBatch"/>, and run here.
/// </summary>
internal sealed class OnnxTensorModel : IBatchModel
{
    private readonly InferenceSession _session;
    private readonly TensorSignature _signature;
    private readonly RunOptions _runOptions = new();
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly TensorRequestCheck _check;
    private readonly TensorBatch _batch;
    private readonly IReadOnlyDictionary<string, long>? _warmupDims;
    private int _disposed;

    private OnnxTensorModel(ModelDefinition definition, InferenceSession session, TensorSignature signature)
    {
        Name = definition.Name;
        Version = definition.Version;
        _session = session;
        _signature = signature;
        _warmupDims = definition.Config.WarmupDims;
        _inputNames = [.. signature.Inputs.Select(i => i.Name)];
        _outputNames = [.. signature.Outputs.Select(o => o.Name)];
        _check = new TensorRequestCheck(definition.Name, signature, definition.Options.MaxBatchSize);
        _batch = new TensorBatch(signature);
        Inputs = [.. signature.Inputs.Select(i => i.ToSpec())];
        Outputs = [.. signature.Outputs.Select(o => o.ToSpec())];
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
                ? new Tensor(slot.Type, shape.ToImmutable(), ReadOnlyMemory<byte>.Empty, [.. Enumerable.Repeat(string.Empty, (int)count)])
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

    public RequestCheck Check(InferRequest request) => _check.Check(request);

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
        var (layouts, padded, totalRows) = _batch.Plan(batch);
        var values = new OrtValue?[_signature.Inputs.Length];
        try
        {
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = _batch.Stage(i, batch, layouts, padded, totalRows);
            }

            using var outputs = _session.Run(_runOptions, _inputNames, values!, _outputNames);
            return _batch.Split(outputs, layouts, padded, totalRows);
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
        _batch.Release();
    }
}
