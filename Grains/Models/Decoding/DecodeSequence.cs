namespace StreamInfer.Grains.Models.Decoding;

/// <summary>
/// One generation in flight on one decoder: its prompt, its key/value cache, its sampler and text assembler. The
/// batcher grain owns the list of sequences and decides which take part in each step; the step itself (on the device
/// thread) is the only code that touches the cache, the sampler and the assembler. The grain may only read the
/// progress fields between steps and set <see cref="Cancelled"/> at any time.
/// </summary>
public sealed class DecodeSequence
{
    private readonly float[][] _keys;
    private readonly float[][] _values;
    private readonly KvCachePool _pool;
    private int _capacity;

    internal DecodeSequence(
        DecoderShape shape,
        KvCachePool pool,
        int[] prompt,
        int maxTokens,
        TokenSampler sampler,
        TextAssembler assembler,
        int? endOfText)
    {
        Shape = shape;
        _pool = pool;
        Prompt = prompt;
        MaxTokens = maxTokens;
        Sampler = sampler;
        Assembler = assembler;
        EndOfText = endOfText;
        _keys = new float[shape.Layers][];
        _values = new float[shape.Layers][];
        for (var l = 0; l < shape.Layers; l++)
        {
            _keys[l] = [];
            _values[l] = [];
        }
    }

    /// <summary>The model's dimensions.</summary>
    public DecoderShape Shape { get; }

    /// <summary>The prompt's token ids.</summary>
    public int[] Prompt { get; }

    /// <summary>The most tokens this sequence generates.</summary>
    public int MaxTokens { get; }

    internal TokenSampler Sampler { get; }

    internal TextAssembler Assembler { get; }

    internal int? EndOfText { get; }

    /// <summary>Tokens whose keys and values are in the cache (prompt tokens, then generated ones).</summary>
    public int CacheLength { get; private set; }

    /// <summary>Prompt tokens already run through the model (prefill progress).</summary>
    public int Prefilled { get; internal set; }

    /// <summary>Whether the whole prompt has been run, so each step now feeds one generated token.</summary>
    public bool Decoding => Prefilled == Prompt.Length;

    /// <summary>Tokens generated so far.</summary>
    public int Generated { get; internal set; }

    /// <summary>The last generated token, which the next step feeds.</summary>
    public int LastToken { get; internal set; }

    /// <summary>Set once the sequence has ended (its last outcome says why).</summary>
    public bool Finished { get; internal set; }

    /// <summary>Set by the grain when the client cancelled; the sequence leaves before the next step.</summary>
    public volatile bool Cancelled;

    /// <summary>The cache's memory, in bytes, as allocated now.</summary>
    public long CacheBytes => 2L * Shape.Layers * Shape.Heads * _capacity * Shape.HeadDim * sizeof(float);

    /// <summary>Returns the cache's memory to the pool (the sequence has left).</summary>
    public void Release()
    {
        for (var l = 0; l < Shape.Layers; l++)
        {
            Return(_keys[l]);
            Return(_values[l]);
            _keys[l] = [];
            _values[l] = [];
        }

        _capacity = 0;
    }

    /// <summary>The keys (or values) of layer <paramref name="layer"/> for head <paramref name="head"/>: the first
    /// <see cref="CacheLength"/> rows of head_dim floats.</summary>
    internal ReadOnlySpan<float> Cached(int layer, bool key, int head)
    {
        var store = key ? _keys[layer] : _values[layer];
        return store.AsSpan(head * _capacity * Shape.HeadDim, CacheLength * Shape.HeadDim);
    }

    /// <summary>Samples the sequence's next token from its logits and decides whether the sequence ends; <paramref name="maxContextTokens"/> is the model's context.</summary>
    internal StepOutcome Next(ReadOnlySpan<float> logits, int maxContextTokens)
    {
        var token = Sampler.Next(logits);
        var index = Generated;
        Generated++;
        LastToken = token;
        if (token == EndOfText)
        {
            Finished = true;
            return new StepOutcome(this, null, FinishReasons.Stop, Assembler.Finish().Text);
        }

        var (text, stopped) = Assembler.Append(token);
        var generated = new GeneratedToken(index, token, text);
        if (stopped)
        {
            Finished = true;
            return new StepOutcome(this, generated, FinishReasons.Stop, string.Empty);
        }

        // The next step would feed this token at position CacheLength: the context must hold it.
        if (Generated >= MaxTokens || CacheLength + 1 >= maxContextTokens)
        {
            Finished = true;
            return new StepOutcome(this, generated, FinishReasons.Length, Assembler.Finish().Text);
        }

        return new StepOutcome(this, generated, null, string.Empty);
    }

    /// <summary>Makes room for <paramref name="more"/> tokens beyond the cache's length, growing by doubling.</summary>
    internal void Reserve(int more)
    {
        var needed = CacheLength + more;
        if (needed <= _capacity)
        {
            return;
        }

        // The whole of what the sequence may hold, at once: it is what admission reserved, and growing by doubling makes
        // every running sequence reallocate on the same step. The arrays come from the model's pool, so a leaving
        // sequence's memory serves the next.
        var capacity = Math.Max(needed, _capacity == 0 ? Prompt.Length + MaxTokens : _capacity * 2);
        var hd = Shape.HeadDim;
        for (var l = 0; l < Shape.Layers; l++)
        {
            _keys[l] = Grow(_keys[l], capacity);
            _values[l] = Grow(_values[l], capacity);
        }

        _capacity = capacity;

        float[] Grow(float[] old, int newCapacity)
        {
            var grown = _pool.Rent(Shape.Heads * newCapacity * hd);
            for (var h = 0; h < Shape.Heads; h++)
            {
                old.AsSpan(h * _capacity * hd, CacheLength * hd).CopyTo(grown.AsSpan(h * newCapacity * hd));
            }

            Return(old);
            return grown;
        }
    }

    /// <summary>The length of the array the pool hands out for one layer's keys (or values) of <paramref name="tokens"/>.</summary>
    internal static long PooledLength(DecoderShape shape, int tokens)
        => KvCachePool.ArrayLength((long)shape.Heads * tokens * shape.HeadDim);

    private void Return(float[] array)
    {
        if (array.Length > 0)
        {
            _pool.Return(array);
        }
    }

    /// <summary>
    /// Appends <paramref name="count"/> new positions for one layer from a <c>present</c> output laid out
    /// [batch, heads, total, head_dim], whose rows for this sequence start at <paramref name="from"/>.
    /// </summary>
    internal void Append(int layer, bool key, ReadOnlySpan<float> present, int row, int total, int from, int count)
    {
        var store = key ? _keys[layer] : _values[layer];
        var hd = Shape.HeadDim;
        for (var h = 0; h < Shape.Heads; h++)
        {
            var source = present.Slice((((row * Shape.Heads) + h) * total + from) * hd, count * hd);
            source.CopyTo(store.AsSpan(((h * _capacity) + CacheLength) * hd));
        }
    }

    /// <summary>Counts <paramref name="count"/> appended positions (after every layer's <see cref="Append"/>).</summary>
    internal void Advance(int count) => CacheLength += count;
}

/// <summary>The dimensions of a decoder's key/value cache and vocabulary.</summary>
public sealed record DecoderShape(int Layers, int Heads, int HeadDim, int VocabSize)
{
    /// <summary>Bytes of cache per token of a sequence (keys and values of every layer).</summary>
    public long BytesPerToken => 2L * Layers * Heads * HeadDim * sizeof(float);
}
