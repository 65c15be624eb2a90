using System.Collections.Immutable;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Models.Repository;
using OrtType = Microsoft.ML.OnnxRuntime.Tensors.TensorElementType;

namespace StreamInfer.Grains.Models.Decoding;

/// <summary>
/// A causal language model in the Hugging Face / Optimum ONNX convention (<c>input_ids</c>, <c>attention_mask</c>,
/// <c>position_ids</c>, <c>past_key_values.N.key|value</c> → <c>logits</c>, <c>present.N.key|value</c>), decoded with a
/// key/value cache per sequence. <see cref="Prepare"/> runs on the thread pool at admission (tokenizing the prompt);
/// <see cref="Step"/> runs on the device thread and advances every sequence it is given by one step.
/// <para>
/// A step runs the model at most twice: once for the prefill chunks of sequences that are joining (their prompt tokens,
/// up to the chunk budget), once for every sequence that is decoding (one token each). Within each run the sequences'
/// caches are left-padded to the longest and the new tokens right-padded; the attention mask hides both paddings and
/// the position ids count each sequence's own tokens, so a sequence's tokens do not depend on its batch-mates.
/// </para>
/// </summary>
public sealed class OnnxDecoderModel : IDecoderModel
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly IDecoderTokenizer _tokenizer;
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly bool _hasUseCacheBranch;
    private readonly PinnedBuffer _ids = new();
    private readonly PinnedBuffer _positions = new();
    private readonly PinnedBuffer _mask = new();
    private readonly PinnedBuffer[] _past;
    private readonly PinnedBuffer _branch = new();
    private int _disposed;

    private OnnxDecoderModel(ModelDefinition definition, InferenceSession session, IDecoderTokenizer tokenizer, DecoderGraph graph)
    {
        Name = definition.Name;
        Version = definition.Version;
        _session = session;
        _tokenizer = tokenizer;
        Shape = graph.Shape;
        _hasUseCacheBranch = graph.HasUseCacheBranch;
        var config = definition.Config;
        MaxContextTokens = config.MaxContextTokens ?? 1024;
        DefaultMaxTokens = config.DefaultMaxTokens ?? 256;
        MaxPrefillTokens = config.MaxPrefillTokens ?? 256;
        KvCacheBytes = (long)(config.KvCacheMb ?? 1024) * 1024 * 1024;
        CachePool = new KvCachePool(KvCacheBytes);
        EndOfText = config.EosTokenId ?? tokenizer.EndOfTextId;

        _inputNames = graph.InputNames();
        _outputNames = graph.OutputNames();
        _past = [.. Enumerable.Range(0, 2 * graph.Shape.Layers).Select(_ => new PinnedBuffer())];
        Inputs = [new TensorSpec("prompt", TensorElementType.String, [1])];
        Outputs = [new TensorSpec("text", TensorElementType.String, [1])];
    }

    public string Name { get; }

    public string Version { get; }

    /// <summary>A decoder takes a prompt, shown as one string input.</summary>
    public ImmutableArray<TensorSpec> Inputs { get; }

    /// <summary>A decoder returns text, shown as one string output.</summary>
    public ImmutableArray<TensorSpec> Outputs { get; }

    /// <summary>How long a decode step of a full batch took at warm-up, in ms.</summary>
    public double WarmBatchMs { get; private set; }

    /// <summary>The cache and vocabulary dimensions.</summary>
    public DecoderShape Shape { get; }

    /// <summary>The most tokens, prompt and generated, one sequence may hold.</summary>
    public int MaxContextTokens { get; }

    /// <summary>Tokens generated when a request sets no <c>max_tokens</c>.</summary>
    public int DefaultMaxTokens { get; }

    /// <summary>The most prompt tokens prefilled in one step.</summary>
    public int MaxPrefillTokens { get; }

    /// <summary>Key/value cache memory for all sequences on the device.</summary>
    public long KvCacheBytes { get; }

    /// <summary>The arrays of this model's key/value caches, reused as sequences come and go.</summary>
    public KvCachePool CachePool { get; }

    /// <summary>The token that ends a generation, if the model has one.</summary>
    public int? EndOfText { get; }

    /// <summary>The tokenizer.</summary>
    public IDecoderTokenizer Tokenizer => _tokenizer;

    /// <summary>
    /// Creates the session, reads the cache's dimensions from its inputs and loads the tokenizer. Returns null, with the
    /// reasons in <paramref name="errors"/>, when the file does not follow the convention.
    /// </summary>
    public static OnnxDecoderModel? Load(ModelDefinition definition, SessionOptions sessionOptions, List<ModelLoadError> errors)
    {
        IDecoderTokenizer tokenizer;
        var folder = Path.GetDirectoryName(Path.GetDirectoryName(definition.OnnxPath!))!;
        try
        {
            tokenizer = DecoderTokenizers.Load(folder, definition.Config.Tokenizer);
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException or System.Text.Json.JsonException)
        {
            // The exception's text may name absolute paths: it goes to the log only.
            errors.Add(new ModelLoadError(definition.Name, $"{definition.Name}/{ModelRepositoryScanner.ConfigFile}", "tokenizer", $"the tokenizer cannot be loaded ({ex.GetType().Name}).") { Detail = ex.Message });
            return null;
        }

        InferenceSession session;
        try
        {
            session = new InferenceSession(definition.OnnxPath!, sessionOptions);
        }
        catch (OnnxRuntimeException ex)
        {
            errors.Add(new ModelLoadError(definition.Name, definition.OnnxFile, null, $"ONNX Runtime cannot load it ({Onnx.OnnxErrors.Code(ex)}).") { Detail = ex.Message.Trim() });
            return null;
        }

        if (DecoderGraph.Read(session, definition, tokenizer, errors) is not { } graph)
        {
            session.Dispose();
            return null;
        }

        return new OnnxDecoderModel(definition, session, tokenizer, graph);
    }

    /// <summary>
    /// Checks a request and tokenizes its prompt into a new sequence. Thread-safe; the batcher runs it on the thread pool. The
    /// error is <see cref="ErrorCode.InvalidInput"/> naming the field at fault.
    /// </summary>
    public (DecodeSequence? Sequence, InferError? Error) Prepare(InferRequest request)
    {
        if (request.Prompt is null)
        {
            return (null, Invalid($"model '{Name}' is a text model: send a 'prompt' (or messages), not tensors."));
        }

        if (!request.Inputs.IsDefaultOrEmpty)
        {
            return (null, Invalid($"model '{Name}' takes a 'prompt', not input tensors."));
        }

        var g = request.Generation ?? new GenerationOptions();
        var stop = g.Stop.IsDefault ? [] : g.Stop;
        if (GenerationSettings.Validate(g.Temperature, g.TopK, g.TopP, g.MaxTokens, stop, Shape.VocabSize) is { } invalid)
        {
            return (null, Invalid(invalid));
        }

        // No more than the context is tokenized: a longer prompt is refused for the cost of one that fits.
        if (!_tokenizer.TryEncode(request.Prompt, MaxContextTokens - 1, out var prompt))
        {
            return (null, Invalid($"the prompt is {MaxContextTokens} tokens or more; model '{Name}' holds at most {MaxContextTokens} tokens, prompt and generated together."));
        }

        if (prompt.Count == 0)
        {
            return (null, Invalid("'prompt' is empty; give at least one character."));
        }

        // A request may ask for more than fits: it is generated until the context is full and ends with "length".
        var maxTokens = Math.Min(g.MaxTokens ?? DefaultMaxTokens, MaxContextTokens - prompt.Count);
        var sampler = new TokenSampler(g.Temperature, g.TopK, g.TopP, g.Seed, defaultTemperature: 0);
        var assembler = new TextAssembler(_tokenizer, stop);
        return (new DecodeSequence(Shape, CachePool, [.. prompt], maxTokens, sampler, assembler, EndOfText), null);
    }

    /// <summary>
    /// Bytes of cache a sequence reserves when it joins: room for its prompt and every token it may generate, as the
    /// pool hands it out (each layer's keys and values in one array, rounded up to a power of two elements).
    /// </summary>
    public long ReservedBytes(DecodeSequence sequence)
        => DecodeSequence.PooledLength(Shape, sequence.Prompt.Length + sequence.MaxTokens) * 2L * Shape.Layers * sizeof(float);

    RequestCheck IInferenceModel.Check(InferRequest request)
    {
        var (_, error) = Prepare(request);
        return error is null ? new RequestCheck(null, 1) : new RequestCheck(error, 0);
    }

    /// <summary>
    /// Runs one step: the next prefill chunk of each sequence in <paramref name="prefill"/> (with its chunk length), and
    /// one token of each sequence in <paramref name="decode"/>. Device thread only. A sequence that ends is marked
    /// <see cref="DecodeSequence.Finished"/>; its cache is released by the caller.
    /// </summary>
    public List<StepOutcome> Step(IReadOnlyList<(DecodeSequence Sequence, int Tokens)> prefill, IReadOnlyList<DecodeSequence> decode)
    {
        var outcomes = new List<StepOutcome>(prefill.Count + decode.Count);
        if (prefill.Count > 0)
        {
            Run(prefill, outcomes);
        }

        if (decode.Count > 0)
        {
            var batch = new (DecodeSequence, int)[decode.Count];
            for (var i = 0; i < decode.Count; i++)
            {
                batch[i] = (decode[i], 1);
            }

            Run(batch, outcomes);
        }

        return outcomes;
    }

    /// <summary>
    /// Runs prefill chunks of <paramref name="count"/> tokens, then decode steps, at each batch size up to
    /// in <paramref name="batchSizes"/>, so the first clients pay no first-run cost. Device
    /// thread only. Returns an error message, or null.
    /// </summary>
    public string? WarmUp(IReadOnlyList<int> batchSizes, int count = 8)
    {
        foreach (var size in batchSizes)
        {
            var sequences = new List<DecodeSequence>(size);
            for (var i = 0; i < size; i++)
            {
                var prompt = Enumerable.Range(0, count).Select(t => (t * 7 + i) % Math.Max(1, _tokenizer.VocabSize - 1)).ToArray();
                sequences.Add(new DecodeSequence(Shape, CachePool, prompt, 2, new TokenSampler(0, null, null, 0), new TextAssembler(_tokenizer, []), null));
            }

            try
            {
                Step([.. sequences.Select(s => (s, s.Prompt.Length))], []);
                var started = Stopwatch.GetTimestamp();
                Step([], sequences);
                WarmBatchMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            }
            catch (Exception ex) when (ex is OnnxRuntimeException or InvalidOperationException or ArgumentException)
            {
                return $"warm-up at {size} sequences failed ({Onnx.OnnxErrors.Code(ex)}).";
            }
            finally
            {
                foreach (var s in sequences)
                {
                    s.Release();
                }
            }
        }

        return null;
    }

    /// <summary>Warms prefill and decode at <paramref name="batchSize"/> sequences (see <see cref="WarmUp(IReadOnlyList{int}, int)"/>).</summary>
    public string? WarmUp(int batchSize) => WarmUp([batchSize]);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _session.Dispose();
        _runOptions.Dispose();
    }

    private InferError Invalid(string message) => new(ErrorCode.InvalidInput, message);

    private void Run(IReadOnlyList<(DecodeSequence Sequence, int Tokens)> batch, List<StepOutcome> outcomes)
    {
        var b = batch.Count;
        var s = 0;
        var p = 0;
        foreach (var (seq, tokens) in batch)
        {
            s = Math.Max(s, tokens);
            p = Math.Max(p, seq.CacheLength);
            seq.Reserve(tokens);
        }

        var total = p + s;
        var ids = Longs(_ids, b * s);
        var positions = Longs(_positions, b * s);
        var mask = Longs(_mask, b * total);
        ids.Clear();
        positions.Clear();
        mask.Clear();
        for (var row = 0; row < b; row++)
        {
            var (seq, tokens) = batch[row];
            var length = seq.CacheLength;
            // Past: left-padded (right-aligned at p); new tokens: left-aligned at p, right-padded to s.
            mask.Slice((row * total) + p - length, length).Fill(1);
            mask.Slice((row * total) + p, tokens).Fill(1);
            for (var t = 0; t < tokens; t++)
            {
                ids[(row * s) + t] = seq.Decoding ? seq.LastToken : seq.Prompt[seq.Prefilled + t];
                positions[(row * s) + t] = length + t;
            }
        }

        var hd = Shape.HeadDim;
        var values = new OrtValue[_inputNames.Length];
        try
        {
            values[0] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, OrtType.Int64, [b, s], _ids.Address, (long)b * s * sizeof(long));
            values[1] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, OrtType.Int64, [b, total], _mask.Address, (long)b * total * sizeof(long));
            values[2] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, OrtType.Int64, [b, s], _positions.Address, (long)b * s * sizeof(long));
            var pastElements = (long)b * Shape.Heads * p * hd;
            for (var l = 0; l < Shape.Layers; l++)
            {
                for (var k = 0; k < 2; k++)
                {
                    var key = k == 0;
                    var buffer = _past[(2 * l) + k];
                    var past = MemoryMarshal.Cast<byte, float>(buffer.Get(Math.Max(4, pastElements * sizeof(float))).AsSpan()).Slice(0, (int)pastElements);
                    for (var row = 0; row < b; row++)
                    {
                        var seq = batch[row].Sequence;
                        var pad = p - seq.CacheLength;
                        for (var h = 0; h < Shape.Heads; h++)
                        {
                            var at = ((row * Shape.Heads) + h) * p * hd;
                            // Padding must be finite: a masked position weighs zero, and zero times NaN is NaN.
                            past.Slice(at, pad * hd).Clear();
                            seq.Cached(l, key, h).CopyTo(past.Slice(at + (pad * hd)));
                        }
                    }

                    values[3 + (2 * l) + k] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, OrtType.Float, [b, Shape.Heads, p, hd], buffer.Address, pastElements * sizeof(float));
                }
            }

            if (_hasUseCacheBranch)
            {
                _branch.Get(1)[0] = p > 0 ? (byte)1 : (byte)0;
                values[^1] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, OrtType.Bool, [1], _branch.Address, 1);
            }

            using var results = _session.Run(_runOptions, _inputNames, values, _outputNames);
            for (var l = 0; l < Shape.Layers; l++)
            {
                for (var k = 0; k < 2; k++)
                {
                    var present = results[1 + (2 * l) + k].GetTensorDataAsSpan<float>();
                    for (var row = 0; row < b; row++)
                    {
                        var (seq, tokens) = batch[row];
                        seq.Append(l, k == 0, present, row, total, p, tokens);
                    }
                }
            }

            var logits = results[0].GetTensorDataAsSpan<float>();
            // The row length comes from the run: a model whose logits axis is dynamic may pad its vocabulary beyond
            // the tokenizer's (50304 for 50257), and slicing at the tokenizer's size would read across rows.
            var vocab = logits.Length / (b * s);
            if (vocab * b * s != logits.Length || vocab < Shape.VocabSize)
            {
                throw new InvalidOperationException($"model '{Name}' returned {logits.Length} logits for {b} x {s} positions; expected rows of at least {Shape.VocabSize}.");
            }

            for (var row = 0; row < b; row++)
            {
                var (seq, tokens) = batch[row];
                seq.Advance(tokens);
                if (!seq.Decoding)
                {
                    seq.Prefilled += tokens;
                    if (!seq.Decoding)
                    {
                        // A chunk that is not the prompt's last: nothing to sample yet.
                        continue;
                    }
                }

                var last = logits.Slice(((row * s) + tokens - 1) * vocab, vocab);
                outcomes.Add(seq.Next(last, MaxContextTokens));
            }
        }
        finally
        {
            foreach (var value in values)
            {
                value?.Dispose();
            }
        }
    }

    private static Span<long> Longs(PinnedBuffer buffer, int count)
        => MemoryMarshal.Cast<byte, long>(buffer.Get(Math.Max(8, (long)count * sizeof(long))).AsSpan()).Slice(0, count);
}
