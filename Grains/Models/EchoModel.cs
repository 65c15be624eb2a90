using System.Collections.Immutable;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models;

/// <summary>
/// The built-in <c>echo</c> model: returns its inputs. It may simulate a device's compute with a fixed delay per batch
/// plus a cost per request, so that batching and scale-out can be measured on a machine without a GPU.
/// </summary>
public sealed class EchoModel : IBatchModel
{
    private readonly ModelOptions _options;
    private readonly Dictionary<string, (TensorElementType Type, long[] Shape)> _inputs;

    public EchoModel(string name, ModelOptions options)
    {
        Name = name;
        _options = options;
        _inputs = options.Inputs.ToDictionary(
            kv => kv.Key,
            kv => (TensorTypes.TryParse(kv.Value.DType, out var t) ? t : TensorElementType.Float32, kv.Value.Shape),
            StringComparer.Ordinal);
    }

    public string Name { get; }

    public string Version => _options.Version;

    public ImmutableArray<TensorSpec> Inputs => [];

    public ImmutableArray<TensorSpec> Outputs => [];

    // Echo is not warmed up: the batcher's admission estimate starts with its first measured batch.
    public double WarmBatchMs => 0;

    public RequestCheck Check(InferRequest request) => Validate(request) is { } error ? new RequestCheck(error, 0) : new RequestCheck(null, 1);

    public void Dispose()
    {
    }

    private InferError? Validate(InferRequest request)
    {
        if (request.Inputs.IsDefaultOrEmpty)
        {
            return new InferError(ErrorCode.InvalidInput, $"model '{Name}' takes input tensors in 'inputs'; none were given.");
        }

        if (RequestSize.Check(Name, request, _options.MaxRequestBytes) is { } tooLarge)
        {
            return tooLarge;
        }

        foreach (var input in request.Inputs)
        {
            if (TensorTypes.CheckConsistent(input.Name, input.Tensor) is { } inconsistent)
            {
                return new InferError(ErrorCode.InvalidInput, inconsistent);
            }

            if (_inputs.Count == 0)
            {
                continue;
            }

            if (!_inputs.TryGetValue(input.Name, out var spec))
            {
                return new InferError(ErrorCode.InvalidInput, $"input '{input.Name}': model '{Name}' has no such input (it takes {string.Join(", ", _inputs.Keys.Order(StringComparer.Ordinal))}).");
            }

            if (spec.Type != input.Tensor.ElementType)
            {
                return new InferError(ErrorCode.InvalidInput, $"input '{input.Name}': expected {spec.Type.ToWire()}, got {input.Tensor.ElementType.ToWire()}.");
            }

            if (!ShapeMatches(spec.Shape, input.Tensor.Shape))
            {
                return new InferError(ErrorCode.InvalidInput, $"input '{input.Name}': expected shape [{string.Join(',', spec.Shape)}], got [{string.Join(',', input.Tensor.Shape)}].");
            }
        }

        foreach (var declared in _inputs.Keys)
        {
            if (!request.Inputs.Any(i => i.Name == declared))
            {
                return new InferError(ErrorCode.InvalidInput, $"input '{declared}' is missing.");
            }
        }

        return null;
    }

    public IReadOnlyList<ItemOutcome> Run(IReadOnlyList<InferRequest> batch)
    {
        var compute = _options.FixedDelay + (_options.PerItemCost * batch.Count);
        if (compute > TimeSpan.Zero)
        {
            // Runs on the device's own thread, so sleeping stands in for a busy accelerator without touching the
            // grain scheduler.
            Thread.Sleep(compute);
        }

        var outcomes = new ItemOutcome[batch.Count];
        for (var i = 0; i < batch.Count; i++)
        {
            outcomes[i] = ItemOutcome.Ok(batch[i].Inputs);
        }

        return outcomes;
    }

    private static bool ShapeMatches(long[] declared, ImmutableArray<long> actual)
    {
        if (declared.Length != actual.Length)
        {
            return false;
        }

        for (var i = 0; i < declared.Length; i++)
        {
            if (declared[i] != -1 && declared[i] != actual[i])
            {
                return false;
            }
        }

        return true;
    }
}
