using System.Collections.Immutable;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// A <c>tensor</c> model on one device: one ONNX Runtime session, created once and reused. Requests are checked by
/// <see cref="TensorRequestCheck"/> at admission, stacked and padded into a batch and split back by
/// <see cref="TensorBatch"/>, and run here.
/// </summary>
internal partial class OnnxTensorModel : IBatchModel
{
    /// <summary>How often at most a failed request's warning is logged, per model instance on its device.</summary>
    internal static readonly TimeSpan FailureWarningInterval = TimeSpan.FromSeconds(10);

    private readonly InferenceSession _session;
    private readonly TensorSignature _signature;
    private readonly RunOptions _runOptions = new();
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly TensorRequestCheck _check;
    private readonly TensorBatch _batch;
    private readonly IReadOnlyDictionary<string, long>? _warmupDims;
    private readonly List<TensorDeclaration>? _declaredInputs;
    private readonly long _maxBatchBytes;
    private readonly WarningInterval _failureWarnings = new(FailureWarningInterval, TimeProvider.System);
    private int _disposed;

    protected OnnxTensorModel(ModelDefinition definition, InferenceSession session, TensorSignature signature)
    {
        Name = definition.Name;
        Version = definition.Version;
        _session = session;
        _signature = signature;
        _warmupDims = definition.Config.WarmupDims;
        _declaredInputs = definition.Config.Inputs;
        _maxBatchBytes = definition.Config.MaxBatchBytes ?? ModelConfig.DefaultMaxBatchBytes;
        _inputNames = [.. signature.Inputs.Select(i => i.Name)];
        _outputNames = [.. signature.Outputs.Select(o => o.Name)];
        _check = new TensorRequestCheck(definition.Name, signature, definition.Options.MaxBatchSize, definition.Options.MaxRequestBytes, _maxBatchBytes);
        _batch = new TensorBatch(signature);
        // What the grid feeds a stateful model itself is not part of what clients see.
        Inputs = [.. signature.Inputs.Where((_, i) => signature.Sequence?.Feeds(i) != true).Select(i => i.ToSpec())];
        Outputs = [.. signature.Outputs.Where((_, o) => signature.Sequence?.IsState(o) != true).Select(o => o.ToSpec())];
    }

    public string Name { get; }

    public string Version { get; }

    public ImmutableArray<TensorSpec> Inputs { get; }

    public ImmutableArray<TensorSpec> Outputs { get; }

    public double WarmBatchMs { get; private set; }

    /// <summary>Where a request's failure is logged in full; its client gets a stable message.</summary>
    internal ILogger Logger { get; init; } = NullLogger.Instance;

    /// <summary>
    /// Creates the session and checks the model against its config. Returns null, with the reasons in
    /// <paramref name="errors"/>, when the file is unreadable or disagrees with the config.
    /// </summary>
    public static OnnxTensorModel? Load(ModelDefinition definition, SessionOptions sessionOptions, List<ModelLoadError> errors, ILogger? logger = null)
    {
        InferenceSession session;
        try
        {
            session = new InferenceSession(definition.OnnxPath!, sessionOptions);
        }
        catch (OnnxRuntimeException ex)
        {
            errors.Add(new ModelLoadError(definition.Name, definition.OnnxFile, null, $"ONNX Runtime cannot load it ({OnnxErrors.Code(ex)}).") { Detail = ex.Message.Trim() });
            return null;
        }

        var signature = TensorSignature.Build(session, definition, errors);
        if (signature is null)
        {
            session.Dispose();
            return null;
        }

        logger ??= NullLogger.Instance;
        return signature.Sequence is null
            ? new OnnxTensorModel(definition, session, signature) { Logger = logger }
            : new OnnxSequenceModel(definition, session, signature) { Logger = logger };
    }

    /// <summary>
    /// Runs the model at <paramref name="batchSize"/> rows (dynamic axes at their <c>warmup_dims</c> size, or 1; every
    /// element at its input's <c>warmup</c> value, or 0), and checks that every output carries the batch on its batch
    /// axis. Returns an error message, or null. Device thread only.
    /// </summary>
    public string? WarmUp(int batchSize)
    {
        var inputs = ImmutableArray.CreateBuilder<NamedTensor>();
        long warmupBytes = 0;
        foreach (var slot in _signature.Inputs)
        {
            var shape = ImmutableArray.CreateBuilder<long>(slot.Rank);
            for (var k = 0; k < slot.Rank; k++)
            {
                shape.Add(!slot.IsOwnAxis(k) ? batchSize : slot.Dims[k] >= 0 ? slot.Dims[k] : _warmupDims?.GetValueOrDefault(slot.Axes[k]!, 1) ?? 1);
            }

            var count = shape.Aggregate(1L, (a, b) => checked(a * b));
            warmupBytes = checked(warmupBytes + (count * Math.Max(slot.Type.ElementSize(), 1)));
            if (warmupBytes > _maxBatchBytes)
            {
                return $"warm-up at batch size {batchSize} needs {warmupBytes}+ bytes of inputs, past max_batch_bytes ({_maxBatchBytes}); lower warmup_dims or warmup_batch_sizes.";
            }

            Tensor tensor;
            if (slot.Type == TensorElementType.String)
            {
                tensor = new Tensor(slot.Type, shape.ToImmutable(), ReadOnlyMemory<byte>.Empty, [.. Enumerable.Repeat(string.Empty, (int)count)]);
            }
            else
            {
                var data = new byte[count * slot.Type.ElementSize()];
                if (_declaredInputs?.Find(d => d.Name == slot.Name)?.Warmup is { } value)
                {
                    StateTransfer.Fill(data, SequenceSignature.Element(slot.Type, value));
                }

                tensor = new Tensor(slot.Type, shape.ToImmutable(), data, []);
            }

            inputs.Add(new NamedTensor(slot.Name, tensor));
        }

        var request = new InferRequest("warmup", Name, inputs.ToImmutable(), null, null, string.Empty);
        var started = Stopwatch.GetTimestamp();
        if (Run([request])[0].Error is { } error)
        {
            return $"warm-up at batch size {batchSize} failed: {error.Message}";
        }

        WarmBatchMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        return null;
    }

    public RequestCheck Check(InferRequest request) => _check.Check(request);

    /// <summary>The inputs and outputs as the model takes them, and the maxima of its dynamic axes.</summary>
    internal TensorSignature Signature => _signature;

    /// <summary>The bytes the input staging buffers hold now.</summary>
    internal long StagingBytes => _batch.StagingBytes;

    /// <summary>How many times the session has run (warm-up included). Device thread only.</summary>
    internal long SessionRuns { get; private set; }

    /// <summary>
    /// Runs the batch as the groups <see cref="BatchCut"/> cuts it into, one after another, and puts the outcomes back
    /// in the batch's order. A group that cannot be built or run is rerun one request at a time, so that only the
    /// request at fault fails.
    /// </summary>
    public IReadOnlyList<ItemOutcome> Run(IReadOnlyList<InferRequest> batch) => RunBatch(batch, null);

    /// <summary>
    /// <see cref="Run(IReadOnlyList{InferRequest})"/> for the rows of stateful sequences, each request's state at the
    /// same index of <paramref name="states"/>: a request's state advances only when it ran.
    /// </summary>
    protected IReadOnlyList<ItemOutcome> RunBatch(IReadOnlyList<InferRequest> batch, IReadOnlyList<SequenceState>? states)
    {
        List<TensorBatch.BatchGroup> groups;
        try
        {
            groups = _batch.Plan(batch, states, _maxBatchBytes);
        }
        catch (Exception ex) when (IsRecoverable(ex))
        {
            return batch.Count == 1 ? [Failed(ex)] : RunEach(batch, states, Enumerable.Range(0, batch.Count));
        }

        var outcomes = new ItemOutcome[batch.Count];
        foreach (var group in groups)
        {
            if (group.Indices.Length == 1 && TooLarge(group) is { } refusal)
            {
                outcomes[group.Indices[0]] = ItemOutcome.Failed(refusal);
                continue;
            }

            try
            {
                var results = RunGroup(group);
                for (var j = 0; j < results.Length; j++)
                {
                    outcomes[group.Indices[j]] = results[j];
                }
            }
            catch (Exception ex) when (IsRecoverable(ex))
            {
                // What passed Check can still fail on its values (an index out of range, say), or a batch can fail to
                // build. Run each request alone, so that the one at fault gets the error and its batch-mates their results.
                if (group.Indices.Length == 1)
                {
                    outcomes[group.Indices[0]] = Failed(ex);
                }
                else
                {
                    var each = RunEach(batch, states, group.Indices);
                    for (var j = 0; j < each.Length; j++)
                    {
                        outcomes[group.Indices[j]] = each[j];
                    }
                }
            }
        }

        return outcomes;
    }

    private ItemOutcome[] RunEach(IReadOnlyList<InferRequest> batch, IReadOnlyList<SequenceState>? states, IEnumerable<int> indices)
        => [.. indices.Select(j => RunBatch([batch[j]], states is null ? null : [states[j]])[0])];

    private ItemOutcome[] RunGroup(TensorBatch.BatchGroup group)
    {
        var values = new OrtValue?[_signature.Inputs.Length];
        try
        {
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = _batch.Stage(i, group);
            }

            SessionRuns++;
            using var outputs = _session.Run(_runOptions, _inputNames, values!, _outputNames);
            return _batch.Split(outputs, group);
        }
        finally
        {
            foreach (var value in values)
            {
                value?.Dispose();
            }

            _batch.Trim(group);
        }
    }

    /// <summary>A request that alone needs more of one input than a staging buffer holds (admission refuses it first).</summary>
    private InferError? TooLarge(TensorBatch.BatchGroup group)
    {
        foreach (var slot in _signature.Inputs)
        {
            var bytes = BatchCut.InputBytes(slot, group.TotalRows, group.Padded);
            if (slot.Type != TensorElementType.String && bytes > PinnedBuffer.MaxBytes)
            {
                return new InferError(ErrorCode.PayloadTooLarge, $"input '{slot.Name}': the request needs {bytes} bytes of it; model '{Name}' stages at most {PinnedBuffer.MaxBytes} bytes per input.");
            }
        }

        return null;
    }

    /// <summary>The failure's client message is stable (ONNX Runtime's text names paths and graph internals); the log has it whole.</summary>
    private ItemOutcome Failed(Exception ex)
    {
        // Bad input can make ONNX Runtime refuse a request at every client's rate: the warning is one line, spaced out.
        LogRequestFailedDetail(Logger, ex, Name);
        if (_failureWarnings.TryPass(out var heldBack))
        {
            LogRequestFailed(Logger, Name, ex.GetType().Name, OnnxErrors.Code(ex), heldBack);
        }

        return ItemOutcome.Failed(ex switch
        {
            OnnxRuntimeException => new InferError(ErrorCode.InvalidInput, $"model '{Name}' could not run the request: ONNX Runtime refused its values ({OnnxErrors.Code(ex)}); the server's log has the details."),
            OverflowException => new InferError(ErrorCode.InvalidInput, $"model '{Name}' could not batch the request: its sizes overflow."),
            _ => new InferError(ErrorCode.Internal, $"model '{Name}' failed on the request: an internal error ({ex.GetType().Name}); the server's log has the details."),
        });
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Model {Model}: a request failed when it ran ({Exception}, {Code}); {HeldBack} more since the last such warning; the exceptions are logged at Debug")]
    private static partial void LogRequestFailed(ILogger logger, string model, string exception, string code, int heldBack);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Model {Model}: a request failed when it ran")]
    private static partial void LogRequestFailedDetail(ILogger logger, Exception ex, string model);

    // Anything but the failures that leave the process unfit to go on: a managed allocation that fails is one batch's
    // problem, and the requests that do not need it can still run.
    private static bool IsRecoverable(Exception ex) => ex is not (StackOverflowException or AccessViolationException or InvalidProgramException);

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
