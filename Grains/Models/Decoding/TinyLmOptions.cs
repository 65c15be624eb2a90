namespace StreamInfer.Grains.Models.Decoding;

/// <summary>
/// Sizes of the built-in <see cref="TinyLm"/> decoder. The defaults (4 layers, d_model 128, 4 heads of 32, 1024
/// positions) give about 0.95 M parameters: small enough to generate at startup and run on a CPU, large enough to
/// exercise batching, padding and the KV cache as a real GPT-2 export would.
/// </summary>
public sealed record TinyLmOptions
{
    /// <summary>Transformer blocks; at least 1 (the past's length is read from layer 0's cache).</summary>
    public int Layers { get; init; } = 4;

    /// <summary>Width of the residual stream; a multiple of <see cref="Heads"/>.</summary>
    public int DModel { get; init; } = 128;

    /// <summary>Attention heads per layer; head_dim = <see cref="DModel"/> / <see cref="Heads"/>.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Rows of the position embedding: the longest context (<c>max_context_tokens</c> in config.json).</summary>
    public int MaxPositions { get; init; } = 1024;

    /// <summary><c>max_batch_size</c> in config.json.</summary>
    public int MaxBatchSize { get; init; } = 64;

    /// <summary>Seed of the weights; another seed is another (equally meaningless) model.</summary>
    public ulong Seed { get; init; } = 0x7E57_11AF_2026_0001UL;

    /// <summary>
    /// Rows of the token embedding and columns of the logits; at least 257. The default is the byte vocabulary plus
    /// <c>&lt;|endoftext|&gt;</c>; a larger one pairs the model with another tokenizer (tests of the BPE path).
    /// </summary>
    public int Vocabulary { get; init; } = TinyLm.VocabSize;

    /// <summary><c>tokenizer</c> in config.json: <c>bytes</c>, or a tokenizer file the caller puts beside the model.</summary>
    public string Tokenizer { get; init; } = "bytes";

    /// <summary><c>eos_token_id</c> in config.json, which the logits bias also favours a little.</summary>
    public int EndOfTextId { get; init; } = TinyLm.EndOfTextTokenId;

    /// <summary>
    /// Adds Optimum's merged-decoder input <c>use_cache_branch</c> (bool [1]). A merged export switches between its
    /// with-past and without-past subgraphs on it; tiny-lm has one graph for both, so the input only passes through, but
    /// the engine must find it and feed it. Default false.
    /// </summary>
    public bool UseCacheBranch { get; init; }

    /// <summary>head_dim.</summary>
    public int HeadDim => DModel / Heads;

    internal void Validate()
    {
        if (Vocabulary < TinyLm.VocabSize || EndOfTextId < 0 || EndOfTextId >= Vocabulary)
        {
            throw new ArgumentOutOfRangeException(nameof(Vocabulary), Vocabulary, "the vocabulary must hold at least the 257 byte tokens, and the end-of-text id must be one of its ids.");
        }

        if (Layers is < 1 or > 64)
        {
            throw new ArgumentOutOfRangeException(nameof(Layers), Layers, "layers must be in [1, 64].");
        }

        if (Heads is < 1 or > 256)
        {
            throw new ArgumentOutOfRangeException(nameof(Heads), Heads, "heads must be in [1, 256].");
        }

        if (DModel is < 1 or > 8192 || DModel % Heads != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(DModel), DModel, "d_model must be in [1, 8192] and a multiple of heads.");
        }

        if (MaxPositions is < 1 or > 1 << 20)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxPositions), MaxPositions, "max positions must be in [1, 1048576].");
        }

        if (MaxBatchSize is < 1 or > 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBatchSize), MaxBatchSize, "max batch size must be in [1, 4096].");
        }
    }
}
