using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace StreamInfer.Grains.Models.Decoding;

/// <summary>
/// A GPT-2-style byte-level BPE tokenizer, loaded from <c>vocab.json</c> + <c>merges.txt</c> or from a Hugging Face
/// <c>tokenizer.json</c>. Microsoft.ML.Tokenizers encodes; token bytes come from this class's own table, built once by
/// undoing GPT-2's byte-to-unicode spelling of each vocabulary entry, so the per-token path is an array slice.
/// </summary>
public sealed partial class ByteLevelBpeTokenizer : IDecoderTokenizer
{
    /// <summary>The end-of-text token of GPT-2 and the models that kept its vocabulary.</summary>
    public const string EndOfTextToken = "<|endoftext|>";

    // Vocabularies past this are not GPT-2-style text models; the bound keeps a corrupt id from sizing huge tables.
    private const int MaxVocabSize = 4_000_000;

    private readonly BpeTokenizer _bpe;
    private readonly byte[] _bytes;
    private readonly int[] _offsets;
    private readonly bool[] _special;
    private readonly bool _addPrefixSpace;

    private ByteLevelBpeTokenizer(
        Dictionary<string, int> vocab,
        List<string> merges,
        IReadOnlyList<AddedToken> added,
        Regex split,
        bool addPrefixSpace)
    {
        _bpe = BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(split, null),
        });
        _addPrefixSpace = addPrefixSpace;

        var size = 0;
        foreach (var (_, id) in vocab)
        {
            size = Math.Max(size, id + 1);
        }
        foreach (var token in added)
        {
            size = Math.Max(size, token.Id + 1);
        }
        VocabSize = size;
        _special = new bool[size];
        var spelled = new byte[size][];
        foreach (var (token, id) in vocab)
        {
            spelled[id] = Unspell(token);
        }
        foreach (var token in added)
        {
            // Added tokens are stored as the text itself, not in the byte-to-unicode spelling.
            spelled[token.Id] = token.Special ? [] : Encoding.UTF8.GetBytes(token.Content);
            _special[token.Id] = token.Special;
        }
        if (vocab.TryGetValue(EndOfTextToken, out var eot) || TryFind(added, EndOfTextToken, out eot))
        {
            EndOfTextId = eot;
            _special[eot] = true;
            spelled[eot] = [];
        }

        _offsets = new int[size + 1];
        var total = 0;
        for (var id = 0; id < size; id++)
        {
            _offsets[id] = total;
            total += spelled[id]?.Length ?? 0;
        }
        _offsets[size] = total;
        _bytes = new byte[total];
        for (var id = 0; id < size; id++)
        {
            spelled[id]?.CopyTo(_bytes, _offsets[id]);
        }
    }

    public int VocabSize { get; }

    public int? EndOfTextId { get; }

    /// <summary>Loads <paramref name="vocabPath"/> (a JSON object of token to id) and <paramref name="mergesPath"/>
    /// (one "left right" pair a line, in priority order, after an optional <c>#version</c> line).</summary>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">A file is not in the expected form; the message names it.</exception>
    public static ByteLevelBpeTokenizer FromVocabAndMerges(string vocabPath, string mergesPath)
    {
        var vocab = ParseJson(vocabPath, root => ReadVocab(root, vocabPath, "the top level"));
        var merges = ReadMergesFile(mergesPath);
        return new ByteLevelBpeTokenizer(vocab, merges, [], Gpt2Split(), addPrefixSpace: false);
    }

    /// <summary>Loads a Hugging Face <c>tokenizer.json</c> whose model is BPE over GPT-2's byte-level spelling.</summary>
    /// <exception cref="FileNotFoundException">The file is missing.</exception>
    /// <exception cref="InvalidDataException">The file is not such a tokenizer; the message names it and says why.</exception>
    public static ByteLevelBpeTokenizer FromTokenizerJson(string path) => ParseJson(path, root =>
    {
        if (root.ValueKind != JsonValueKind.Object
            || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
        {
            throw Invalid(path, "it has no 'model' object");
        }
        if (model.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String && type.GetString() != "BPE")
        {
            throw Invalid(path, $"its model type is '{type.GetString()}', and only byte-level BPE is supported");
        }
        if (!model.TryGetProperty("vocab", out var vocabElement))
        {
            throw Invalid(path, "it has no 'model.vocab'");
        }
        var vocab = ReadVocab(vocabElement, path, "'model.vocab'");
        var merges = model.TryGetProperty("merges", out var mergesElement)
            ? ReadMergesJson(mergesElement, path)
            : [];
        var added = root.TryGetProperty("added_tokens", out var addedElement)
            ? ReadAddedTokens(addedElement, path)
            : [];
        var (split, addPrefixSpace) = root.TryGetProperty("pre_tokenizer", out var pre)
            ? ReadPreTokenizer(pre, path)
            : (Gpt2Split(), false);
        return new ByteLevelBpeTokenizer(vocab, merges, added, split, addPrefixSpace);
    });

    public IReadOnlyList<int> Encode(string text) => _bpe.EncodeToIds(Prefixed(text));

    public bool TryEncode(string text, int maxTokens, out IReadOnlyList<int> ids)
    {
        text = Prefixed(text);
        ids = _bpe.EncodeToIds(text, maxTokens, out _, out var consumed);
        return consumed >= text.Length;
    }

    private string Prefixed(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _addPrefixSpace && text.Length > 0 && !char.IsWhiteSpace(text[0]) ? " " + text : text;
    }

    public ReadOnlySpan<byte> TokenBytes(int id) =>
        (uint)id < (uint)VocabSize ? _bytes.AsSpan(_offsets[id], _offsets[id + 1] - _offsets[id]) : [];

    public bool IsSpecial(int id) => (uint)id < (uint)VocabSize && _special[id];

    public string Decode(IEnumerable<int> ids) => TokenText.Decode(this, ids);

    // GPT-2's pre-tokenization: contractions, letters, digits and other runs, each with at most one leading space.
    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.CultureInvariant)]
    private static partial Regex Gpt2Split();

    private static byte[] Unspell(string token)
    {
        var bytes = new byte[token.Length];
        for (var i = 0; i < token.Length; i++)
        {
            var b = Gpt2ByteMap.ToByte(token[i]);
            if (b < 0)
            {
                // Not in the byte spelling (some exports list such entries): the best reading is the text itself.
                return Encoding.UTF8.GetBytes(token);
            }
            bytes[i] = (byte)b;
        }
        return bytes;
    }

    private static bool TryFind(IReadOnlyList<AddedToken> added, string content, out int id)
    {
        foreach (var token in added)
        {
            if (token.Content == content)
            {
                id = token.Id;
                return true;
            }
        }
        id = -1;
        return false;
    }

    private static T ParseJson<T>(string path, Func<JsonElement, T> read)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Tokenizer file '{path}' does not exist.", path);
        }
        try
        {
            using var stream = File.OpenRead(path);
            using var document = JsonDocument.Parse(stream);
            return read(document.RootElement);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Tokenizer file '{path}' is not valid JSON: {e.Message}", e);
        }
    }

    private static Dictionary<string, int> ReadVocab(JsonElement element, string path, string where)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw Invalid(path, $"{where} is not a JSON object of token to id");
        }
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in element.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out var id)
                || id < 0 || id >= MaxVocabSize)
            {
                throw Invalid(path, $"the id of token '{entry.Name}' in {where} is not an integer in [0, {MaxVocabSize})");
            }
            vocab[entry.Name] = id;
        }
        if (vocab.Count == 0)
        {
            throw Invalid(path, $"{where} is empty");
        }
        return vocab;
    }

    private static List<string> ReadMergesFile(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Tokenizer file '{path}' does not exist.", path);
        }
        var merges = new List<string>();
        var number = 0;
        foreach (var line in File.ReadLines(path))
        {
            number++;
            if (line.Length == 0 || (number == 1 && line.StartsWith("#version", StringComparison.Ordinal)))
            {
                continue;
            }
            var parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
            {
                throw Invalid(path, $"line {number} is not a 'left right' pair");
            }
            merges.Add(line);
        }
        return merges;
    }

    // tokenizer.json spells a merge either as "left right" or, in newer exports, as ["left", "right"].
    private static List<string> ReadMergesJson(JsonElement element, string path)
    {
        if (element.ValueKind != JsonValueKind.Array)
        {
            throw Invalid(path, "'model.merges' is not an array");
        }
        var merges = new List<string>(element.GetArrayLength());
        var index = 0;
        foreach (var merge in element.EnumerateArray())
        {
            string? pair = merge.ValueKind switch
            {
                JsonValueKind.String => merge.GetString(),
                JsonValueKind.Array when merge.GetArrayLength() == 2
                    && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String
                    => merge[0].GetString() + " " + merge[1].GetString(),
                _ => null,
            };
            if (pair is null || pair.Split(' ').Length != 2)
            {
                throw Invalid(path, $"'model.merges[{index}]' is not a pair of tokens");
            }
            merges.Add(pair);
            index++;
        }
        return merges;
    }

    private static List<AddedToken> ReadAddedTokens(JsonElement element, string path)
    {
        var added = new List<AddedToken>();
        if (element.ValueKind != JsonValueKind.Array)
        {
            return element.ValueKind == JsonValueKind.Null ? added : throw Invalid(path, "'added_tokens' is not an array");
        }
        foreach (var token in element.EnumerateArray())
        {
            if (token.ValueKind != JsonValueKind.Object
                || !token.TryGetProperty("id", out var id) || !id.TryGetInt32(out var value) || value < 0 || value >= MaxVocabSize
                || !token.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
            {
                throw Invalid(path, "an entry of 'added_tokens' lacks an integer 'id' or a string 'content'");
            }
            var special = token.TryGetProperty("special", out var flag) && flag.ValueKind == JsonValueKind.True;
            added.Add(new AddedToken(value, content.GetString()!, special));
        }
        return added;
    }

    private static (Regex Split, bool AddPrefixSpace) ReadPreTokenizer(JsonElement element, string path)
    {
        if (element.ValueKind == JsonValueKind.Null)
        {
            return (Gpt2Split(), false);
        }
        Regex? split = null;
        var addPrefixSpace = false;
        var byteLevel = false;
        Visit(element);
        if (!byteLevel)
        {
            throw Invalid(path, "its pre_tokenizer has no ByteLevel step, so it is not a byte-level BPE tokenizer");
        }
        return (split ?? Gpt2Split(), addPrefixSpace);

        void Visit(JsonElement step)
        {
            var type = step.TryGetProperty("type", out var t) ? t.GetString() : null;
            switch (type)
            {
                case "Sequence" when step.TryGetProperty("pretokenizers", out var steps) && steps.ValueKind == JsonValueKind.Array:
                    foreach (var inner in steps.EnumerateArray())
                    {
                        Visit(inner);
                    }
                    break;
                case "ByteLevel":
                    byteLevel = true;
                    addPrefixSpace |= step.TryGetProperty("add_prefix_space", out var prefix) && prefix.ValueKind == JsonValueKind.True;
                    break;
                case "Split" when step.TryGetProperty("pattern", out var pattern)
                    && pattern.TryGetProperty("Regex", out var regex) && regex.ValueKind == JsonValueKind.String:
                    try
                    {
                        split = new Regex(regex.GetString()!, RegexOptions.CultureInvariant | RegexOptions.Compiled);
                    }
                    catch (ArgumentException e)
                    {
                        throw new InvalidDataException($"Tokenizer file '{path}': its Split pattern is not a regex .NET can use: {e.Message}", e);
                    }
                    break;
                default:
                    break;
            }
        }
    }

    private static InvalidDataException Invalid(string path, string reason) =>
        new($"Tokenizer file '{path}' cannot be used: {reason}.");

    private readonly record struct AddedToken(int Id, string Content, bool Special);
}
