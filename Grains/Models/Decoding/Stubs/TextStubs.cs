// TEMPORARY stand-ins until the tokenizers branch lands; deleted at merge.
#pragma warning disable
namespace StreamInfer.Grains.Models.Decoding;

public interface IDecoderTokenizer
{
    int VocabSize { get; }
    int? EndOfTextId { get; }
    IReadOnlyList<int> Encode(string text);
    ReadOnlySpan<byte> TokenBytes(int id);
    bool IsSpecial(int id);
}

public static class DecoderTokenizers
{
    public static IDecoderTokenizer Load(string modelDirectory, string? tokenizer) => new Bytes();
    private sealed class Bytes : IDecoderTokenizer
    {
        public int VocabSize => 257;
        public int? EndOfTextId => 256;
        public IReadOnlyList<int> Encode(string text) => System.Text.Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();
        public ReadOnlySpan<byte> TokenBytes(int id) => id < 256 ? new[] { (byte)id } : [];
        public bool IsSpecial(int id) => id >= 256;
    }
}

public sealed class TextAssembler(IDecoderTokenizer tokenizer, IReadOnlyList<string> stop)
{
    private readonly System.Text.Decoder _d = System.Text.Encoding.UTF8.GetDecoder();
    public (string Delta, bool Stopped) Append(int tokenId)
    {
        var bytes = tokenizer.TokenBytes(tokenId).ToArray();
        var chars = new char[16];
        var n = _d.GetChars(bytes, 0, bytes.Length, chars, 0, false);
        return (new string(chars, 0, n), false);
    }
    public string Finish() => string.Empty;
}

public sealed class TokenSampler(double? temperature, int? topK, double? topP, long? seed)
{
    public int Next(ReadOnlySpan<float> logits)
    {
        var best = 0;
        for (var i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}

public static class GenerationSettings
{
    public static string? Validate(double? temperature, int? topK, double? topP, int? maxTokens, IReadOnlyList<string>? stop, int vocabSize) => null;
}
