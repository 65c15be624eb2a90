using System.Text;
using System.Text.Json;

namespace StreamInfer.Tests.Grains.Models.Decoding;

/// <summary>
/// A tiny GPT-2-style byte-level BPE vocabulary written to a temp folder in both forms (vocab.json + merges.txt and
/// tokenizer.json): ids 0..255 spell the bytes 0..255 in GPT-2's byte-to-unicode spelling, then merged tokens, then
/// &lt;|endoftext|&gt;. The spelling is written out here independently of the production map.
/// </summary>
internal sealed class TinyBpeFiles : IDisposable
{
    public static readonly string[] Merges =
    [
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "Ã ©", "ä ¸",
    ];

    public const int He = 256;
    public const int Ll = 257;
    public const int Hello = 259;
    public const int World = 264;
    public const int EAcute = 265;
    public const int EndOfText = 267;

    public TinyBpeFiles()
    {
        Directory.CreateDirectory(Folder);
        Vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var b = 0; b < 256; b++)
        {
            Vocab[Spell(b)] = b;
        }
        foreach (var merge in Merges)
        {
            Vocab[merge.Replace(" ", "", StringComparison.Ordinal)] = Vocab.Count;
        }
        Vocab["<|endoftext|>"] = Vocab.Count;
    }

    public string Folder { get; } = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));

    public Dictionary<string, int> Vocab { get; }

    public string WriteVocabAndMerges()
    {
        File.WriteAllText(Path.Combine(Folder, "vocab.json"), JsonSerializer.Serialize(Vocab));
        File.WriteAllText(Path.Combine(Folder, "merges.txt"), "#version: 0.2\n" + string.Join('\n', Merges) + "\n");
        return Folder;
    }

    /// <summary>Writes tokenizer.json; in it &lt;|endoftext|&gt; is an added special token, as Hugging Face exports it.</summary>
    public string WriteTokenizerJson(bool mergesAsPairs = false, string fileName = "tokenizer.json")
    {
        var json = new
        {
            version = "1.0",
            added_tokens = new object[]
            {
                new { id = EndOfText, content = "<|endoftext|>", single_word = false, special = true },
            },
            normalizer = (object?)null,
            pre_tokenizer = new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = true },
            model = new
            {
                type = "BPE",
                vocab = Vocab,
                merges = mergesAsPairs ? Merges.Select(m => (object)m.Split(' ')).ToArray() : Merges.Cast<object>().ToArray(),
            },
        };
        File.WriteAllText(Path.Combine(Folder, fileName), JsonSerializer.Serialize(json));
        return Folder;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static string Spell(int b)
    {
        var printable = b is >= 0x21 and <= 0x7E or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
        if (printable)
        {
            return ((char)b).ToString();
        }
        var shifted = 0;
        for (var i = 0; i < b; i++)
        {
            if (!(i is >= 0x21 and <= 0x7E or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF))
            {
                shifted++;
            }
        }
        return ((char)(256 + shifted)).ToString();
    }

    public static byte[] Concat(StreamInfer.Grains.Models.Decoding.IDecoderTokenizer tokenizer, IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            bytes.AddRange(tokenizer.TokenBytes(id).ToArray());
        }
        return [.. bytes];
    }

    public static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);
}
