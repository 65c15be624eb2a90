using System.Collections.Immutable;
using System.Globalization;
using Google.Protobuf.Collections;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.Grpc;

/// <summary>
/// A <see cref="ModelInferRequest"/> as read and checked: its tensors (raw or typed), the outputs it asks for and its
/// parameters. A request whose one input is a single BYTES element named <c>prompt</c> (or Triton's
/// <c>text_input</c>) may be a decoder's prompt; whether it is depends on the model (see <see cref="ToInfer"/>).
/// </summary>
internal sealed record GrpcRequest(
    string Id,
    string Model,
    string? Version,
    ImmutableArray<NamedTensor> Inputs,
    HashSet<string>? Outputs,
    bool Raw,
    TimeSpan? Timeout,
    int? Priority,
    GenerationOptions? Generation,
    SequenceControl? Sequence = null)
{
    /// <summary>The input that carries a decoder's prompt, as the model metadata names it.</summary>
    public const string PromptInput = "prompt";

    /// <summary>The name Triton's LLM backends give the prompt; the answer then names its text <see cref="TritonTextOutput"/>.</summary>
    public const string TritonPromptInput = "text_input";

    /// <summary>The output that carries a decoder's text, as the model metadata names it.</summary>
    public const string TextOutput = "text";

    public const string TritonTextOutput = "text_output";

    /// <summary>The prompt's text when the request has the form of a decoder's, else null.</summary>
    public string? PromptText => Inputs is [{ Name: PromptInput or TritonPromptInput, Tensor: { ElementType: TensorElementType.String, Strings: [var text] } }] ? text : null;

    /// <summary>The name of the output that carries a decoder's text: Triton's when the prompt came as Triton's.</summary>
    public string TextOutputName => Inputs is [{ Name: TritonPromptInput }] ? TritonTextOutput : TextOutput;

    /// <summary>The request as the grid takes it: its prompt when <paramref name="decoder"/>, else its tensors.</summary>
    public ClientFrame.Infer ToInfer(bool decoder) => decoder && PromptText is { } prompt
        ? new ClientFrame.Infer(Id, Model, [], prompt, Timeout, Priority, Generation, Sequence: Sequence)
        : new ClientFrame.Infer(Id, Model, Inputs, null, Timeout, Priority, Generation, Sequence: Sequence);

    /// <summary>
    /// Reads <paramref name="request"/>; <paramref name="deadline"/> is what is left of the call's gRPC deadline (null
    /// when it has none), the request's timeout unless <c>timeout_ms</c> is shorter. Typed contents may decode to at
    /// most <paramref name="maxTypedBytes"/> in all: a varint of one byte becomes eight, so they are held to the JSON
    /// limit and large tensors come raw.
    /// </summary>
    public static (GrpcRequest? Request, InferError? Error) Read(ModelInferRequest request, TimeSpan? deadline, int maxTypedBytes)
    {
        if (request.ModelName.Length == 0)
        {
            return (null, new InferError(ErrorCode.BadRequest, "'model_name' is required."));
        }

        if (request.Id.Length > 256)
        {
            return (null, new InferError(ErrorCode.BadRequest, "'id' must be at most 256 characters."));
        }

        if (deadline is { } left && left <= TimeSpan.Zero)
        {
            return (null, new InferError(ErrorCode.DeadlineExceeded, "the call's deadline passed before the request was read."));
        }

        var (parameters, invalid) = ReadParameters(request.Parameters);
        if (invalid is not null)
        {
            return (null, invalid);
        }

        var timeout = parameters.Timeout;
        if (deadline is { } d && (timeout is null || d < timeout))
        {
            timeout = d;
        }

        var (inputs, raw, inputError) = ReadInputs(request, maxTypedBytes);
        if (inputError is not null)
        {
            return (null, inputError);
        }

        HashSet<string>? outputs = null;
        if (request.Outputs.Count > 0)
        {
            outputs = new HashSet<string>(StringComparer.Ordinal);
            foreach (var output in request.Outputs)
            {
                if (output.Name.Length == 0)
                {
                    return (null, new InferError(ErrorCode.BadRequest, "every entry of 'outputs' needs a non-empty 'name'."));
                }

                outputs.Add(output.Name);
            }
        }

        var version = request.ModelVersion.Length > 0 ? request.ModelVersion : null;
        return (new GrpcRequest(request.Id, request.ModelName, version, inputs, outputs, raw, timeout, parameters.Priority, parameters.Generation, parameters.Sequence), null);
    }

    /// <summary>The bytes <paramref name="request"/>'s tensors hold while it is served: its raw contents and its typed
    /// contents as parsed.</summary>
    public static long PayloadBytes(ModelInferRequest request)
        => request.RawInputContents.Sum(r => (long)r.Length) + request.Inputs.Sum(i => TypedContents.HeldBytes(i.Contents));

    private static (ImmutableArray<NamedTensor> Inputs, bool Raw, InferError? Error) ReadInputs(ModelInferRequest request, int maxTypedBytes)
    {
        static InferError Invalid(string message) => new(ErrorCode.InvalidInput, message);

        var raw = request.RawInputContents.Count > 0;
        if (raw && request.RawInputContents.Count != request.Inputs.Count)
        {
            return (default, raw, Invalid($"raw_input_contents holds {request.RawInputContents.Count} entries for {request.Inputs.Count} inputs; it needs one per input, in their order."));
        }

        var typedBytes = 0L;
        var inputs = ImmutableArray.CreateBuilder<NamedTensor>(request.Inputs.Count);
        for (var i = 0; i < request.Inputs.Count; i++)
        {
            var input = request.Inputs[i];
            if (input.Name.Length == 0)
            {
                return (default, raw, Invalid($"inputs[{i}] needs a non-empty 'name'."));
            }

            if (inputs.Any(t => t.Name == input.Name))
            {
                return (default, raw, Invalid($"input '{input.Name}' is given more than once."));
            }

            if (!TensorTypes.TryParse(input.Datatype, out var type))
            {
                return (default, raw, Invalid($"input '{input.Name}': unknown datatype '{input.Datatype}' (known: FP32, FP16, FP64, INT64, INT32, INT16, INT8, UINT8, BOOL, BYTES)."));
            }

            var shape = ImmutableArray.CreateRange(input.Shape);
            if (raw && input.Contents is not null && input.Contents.CalculateSize() > 0)
            {
                return (default, raw, Invalid($"input '{input.Name}': contents and raw_input_contents cannot both be given."));
            }

            if (!raw)
            {
                typedBytes += TypedContents.DecodedBytes(type, input.Contents);
                if (typedBytes > maxTypedBytes)
                {
                    return (default, raw, new InferError(ErrorCode.PayloadTooLarge, $"typed contents may hold at most {maxTypedBytes} bytes of elements in one request (Frontend:MaxFrameBytes); with input '{input.Name}' they hold {typedBytes}. Send large tensors in raw_input_contents."));
                }
            }

            var error = raw
                ? RawTensors.TryRead(input.Name, type, shape, request.RawInputContents[i].Memory, out var tensor)
                : TypedContents.TryRead(input.Name, type, shape, input.Contents, out tensor);

            if (error is not null)
            {
                return (default, raw, Invalid(error));
            }

            inputs.Add(new NamedTensor(input.Name, tensor!));
        }

        return (inputs.MoveToImmutable(), raw, null);
    }

    /// <summary>
    /// The sequence id <paramref name="request"/> names, read before the request is (a stream orders a sequence's
    /// admissions as it reads them); null when it names none, or none that is valid (the full read refuses it).
    /// </summary>
    public static string? SequenceKey(ModelInferRequest request)
        => request.Parameters.TryGetValue(SequenceFields.Id, out var p) ? SequenceId(p).Id : null;

    private readonly record struct Parameters(TimeSpan? Timeout, int? Priority, GenerationOptions? Generation, SequenceControl? Sequence);

    /// <summary>
    /// Reads <c>priority</c> and <c>timeout_ms</c> (as in KServe's HTTP body), a stateful sequence's
    /// <c>sequence_id</c>, <c>sequence_start</c> and <c>sequence_end</c>, and a decoder's generation settings
    /// (<c>max_tokens</c>, <c>temperature</c>, <c>top_k</c>, <c>top_p</c>, <c>seed</c>, <c>stop</c>); other parameters
    /// are ignored, as custom parameters are.
    /// </summary>
    private static (Parameters Parameters, InferError? Error) ReadParameters(MapField<string, InferParameter> map)
    {
        static InferError Bad(string message) => new(ErrorCode.BadRequest, message);
        static InferError Invalid(string message) => new(ErrorCode.InvalidInput, message);

        int? priority = null;
        TimeSpan? timeout = null;
        if (map.TryGetValue("priority", out var p))
        {
            if (Integer(p) is not { } level || level is < 0 or > 15)
            {
                return (default, Bad("parameter 'priority' must be an integer from 0 to 15."));
            }

            priority = (int)level;
        }

        if (map.TryGetValue("timeout_ms", out var t))
        {
            if (Number(t) is not { } ms || ms < 1 || ms > TimeSpan.FromHours(1).TotalMilliseconds)
            {
                return (default, Bad("parameter 'timeout_ms' must be a number of milliseconds from 1 to 3600000."));
            }

            timeout = TimeSpan.FromMilliseconds(ms);
        }

        var (sequence, sequenceError) = ReadSequence(map);
        if (sequenceError is not null)
        {
            return (default, Bad(sequenceError));
        }

        var generation = new GenerationOptions();
        var any = false;
        foreach (var (name, value) in map)
        {
            switch (name)
            {
                case "max_tokens" or "top_k":
                    if (Integer(value) is not { } n || n is < int.MinValue or > int.MaxValue)
                    {
                        return (default, Invalid($"parameter '{name}' must be an integer."));
                    }

                    generation = name == "max_tokens" ? generation with { MaxTokens = (int)n } : generation with { TopK = (int)n };
                    break;
                case "temperature" or "top_p":
                    if (Number(value) is not { } x || !double.IsFinite(x))
                    {
                        return (default, Invalid($"parameter '{name}' must be a number."));
                    }

                    generation = name == "temperature" ? generation with { Temperature = x } : generation with { TopP = x };
                    break;
                case "seed":
                    if (Integer(value) is not { } seed)
                    {
                        return (default, Invalid("parameter 'seed' must be an integer."));
                    }

                    generation = generation with { Seed = seed };
                    break;
                case "stop":
                    if (value.ParameterChoiceCase != InferParameter.ParameterChoiceOneofCase.StringParam)
                    {
                        return (default, Invalid("parameter 'stop' must be a string."));
                    }

                    generation = generation with { Stop = [value.StringParam] };
                    break;
                default:
                    continue;
            }

            any = true;
        }

        return (new Parameters(timeout, priority, any ? generation : null, sequence), null);
    }

    private static (SequenceControl? Sequence, string? Error) ReadSequence(MapField<string, InferParameter> map)
    {
        string? id = null;
        if (map.TryGetValue(SequenceFields.Id, out var idParameter))
        {
            (id, var valid) = SequenceId(idParameter);
            if (!valid)
            {
                return (null, $"parameter '{SequenceFields.Id}' must be {SequenceFields.IdRule(integerId: true)}.");
            }
        }

        var flags = new bool[2];
        string[] names = [SequenceFields.Start, SequenceFields.End];
        for (var i = 0; i < names.Length; i++)
        {
            if (map.TryGetValue(names[i], out var flag))
            {
                if (flag.ParameterChoiceCase != InferParameter.ParameterChoiceOneofCase.BoolParam)
                {
                    return (null, $"parameter '{names[i]}' must be a bool_param.");
                }

                flags[i] = flag.BoolParam;
            }
        }

        return SequenceFields.Build(id, flags[0], flags[1], string.Empty);
    }

    /// <summary>A sequence id parameter as text: a string as given, a positive integer as its decimal text.</summary>
    private static (string? Id, bool Valid) SequenceId(InferParameter p)
    {
        var id = p.ParameterChoiceCase switch
        {
            InferParameter.ParameterChoiceOneofCase.StringParam => p.StringParam,
            InferParameter.ParameterChoiceOneofCase.Int64Param when p.Int64Param > 0 => p.Int64Param.ToString(CultureInfo.InvariantCulture),
            InferParameter.ParameterChoiceOneofCase.Uint64Param when p.Uint64Param > 0 => p.Uint64Param.ToString(CultureInfo.InvariantCulture),
            _ => null,
        };

        return id is not null && SequenceFields.IdError(id) is null ? (id, true) : (null, false);
    }

    /// <summary>An integer parameter's value (int64 or uint64), or null.</summary>
    private static long? Integer(InferParameter p) => p.ParameterChoiceCase switch
    {
        InferParameter.ParameterChoiceOneofCase.Int64Param => p.Int64Param,
        InferParameter.ParameterChoiceOneofCase.Uint64Param when p.Uint64Param <= long.MaxValue => (long)p.Uint64Param,
        _ => null,
    };

    /// <summary>A numeric parameter's value (double, int64 or uint64), or null.</summary>
    private static double? Number(InferParameter p) => p.ParameterChoiceCase == InferParameter.ParameterChoiceOneofCase.DoubleParam ? p.DoubleParam : Integer(p);
}
