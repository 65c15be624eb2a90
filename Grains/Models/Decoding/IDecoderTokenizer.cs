namespace StreamInfer.Grains.Models.Decoding;

/// <summary>
/// The text side of a decoder model's vocabulary: text to token ids for prompts, and token ids back to the UTF-8 bytes
/// they stand for, which <see cref="TextAssembler"/> turns into text as tokens are generated. Implementations are
/// immutable after loading and safe to share between sequences and threads.
/// </summary>
public interface IDecoderTokenizer
{
    /// <summary>One more than the largest token id; the length of the logits row the model produces.</summary>
    int VocabSize { get; }

    /// <summary>The id of <c>&lt;|endoftext|&gt;</c>, where the vocabulary has one; generation stops on it.</summary>
    int? EndOfTextId { get; }

    /// <summary>The token ids of <paramref name="text"/>, which is encoded as plain text: no special tokens come of it.</summary>
    IReadOnlyList<int> Encode(string text);

    /// <summary>
    /// The token ids of <paramref name="text"/> when it has at most <paramref name="maxTokens"/> tokens; false as soon as
    /// it is known to have more: encoding stops there, so a long text costs no more than its first
    /// <paramref name="maxTokens"/> tokens.
    /// </summary>
    bool TryEncode(string text, int maxTokens, out IReadOnlyList<int> ids);

    /// <summary>The UTF-8 bytes token <paramref name="id"/> stands for; empty for special tokens and unknown ids.</summary>
    ReadOnlySpan<byte> TokenBytes(int id);

    /// <summary>Whether <paramref name="id"/> is a control token (such as <c>&lt;|endoftext|&gt;</c>) that contributes no text.</summary>
    bool IsSpecial(int id);

    /// <summary>The text of <paramref name="ids"/> as a whole; invalid UTF-8 becomes U+FFFD.</summary>
    string Decode(IEnumerable<int> ids);
}
