using System.Text;

namespace StreamInfer.Grains.Models.Decoding;

/// <summary>
/// The tokenizer of the built-in tiny-lm: ids 0..255 are the bytes of the UTF-8 text and 256 is
/// <c>&lt;|endoftext|&gt;</c>.
/// </summary>
public sealed class ByteTokenizer : IDecoderTokenizer
{
    /// <summary>The id of <c>&lt;|endoftext|&gt;</c>.</summary>
    public const int EndOfText = 256;

    private static readonly byte[] s_bytes = CreateByteTable();

    /// <summary>The one instance; it holds no state.</summary>
    public static ByteTokenizer Instance { get; } = new();

    public int VocabSize => EndOfText + 1;

    public int? EndOfTextId => EndOfText;

    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return ToIds(Encoding.UTF8.GetBytes(text));
    }

    public bool TryEncode(string text, int maxTokens, out IReadOnlyList<int> ids)
    {
        ArgumentNullException.ThrowIfNull(text);

        // Every char is at least one byte: a text of more chars than that has more bytes, and is not read.
        if (text.Length > maxTokens || Encoding.UTF8.GetByteCount(text) > maxTokens)
        {
            ids = [];
            return false;
        }

        ids = Encode(text);
        return true;
    }

    private static int[] ToIds(byte[] utf8)
    {
        var ids = new int[utf8.Length];
        for (var i = 0; i < utf8.Length; i++)
        {
            ids[i] = utf8[i];
        }
        return ids;
    }

    public ReadOnlySpan<byte> TokenBytes(int id) =>
        (uint)id < EndOfText ? new ReadOnlySpan<byte>(s_bytes, id, 1) : [];

    public bool IsSpecial(int id) => id == EndOfText;

    public string Decode(IEnumerable<int> ids) => TokenText.Decode(this, ids);

    private static byte[] CreateByteTable()
    {
        var table = new byte[EndOfText];
        for (var i = 0; i < table.Length; i++)
        {
            table[i] = (byte)i;
        }
        return table;
    }
}
