namespace StreamInfer.Grains.Models.Decoding;

/// <summary>Finds and loads the tokenizer of a decoder model's folder.</summary>
public static class DecoderTokenizers
{
    /// <summary>The name that selects <see cref="ByteTokenizer"/> rather than a file.</summary>
    public const string Bytes = "bytes";

    /// <summary>
    /// Loads the tokenizer named by <paramref name="tokenizer"/>: <see cref="Bytes"/> for <see cref="ByteTokenizer"/>,
    /// a file name (a <c>tokenizer.json</c>-style file, or a <c>vocab.json</c> next to <c>merges.txt</c>) in
    /// <paramref name="modelDirectory"/>, or null to take <c>tokenizer.json</c> if the folder has one and else
    /// <c>vocab.json</c> + <c>merges.txt</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">No tokenizer file is there; the message says which were looked for.</exception>
    /// <exception cref="InvalidDataException">A file is not a byte-level BPE tokenizer; the message names it and says why.</exception>
    public static IDecoderTokenizer Load(string modelDirectory, string? tokenizer)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        if (string.Equals(tokenizer, Bytes, StringComparison.OrdinalIgnoreCase))
        {
            return ByteTokenizer.Instance;
        }

        var merges = Path.Combine(modelDirectory, "merges.txt");
        if (tokenizer is not null)
        {
            var file = Path.Combine(modelDirectory, tokenizer);
            if (!File.Exists(file))
            {
                throw new FileNotFoundException($"Tokenizer file '{file}' does not exist.", file);
            }
            if (!string.Equals(Path.GetFileName(file), "vocab.json", StringComparison.OrdinalIgnoreCase))
            {
                return ByteLevelBpeTokenizer.FromTokenizerJson(file);
            }
            return File.Exists(merges)
                ? ByteLevelBpeTokenizer.FromVocabAndMerges(file, merges)
                : throw new FileNotFoundException($"Tokenizer file '{file}' needs '{merges}' next to it, which does not exist.", merges);
        }

        var json = Path.Combine(modelDirectory, "tokenizer.json");
        if (File.Exists(json))
        {
            return ByteLevelBpeTokenizer.FromTokenizerJson(json);
        }
        var vocab = Path.Combine(modelDirectory, "vocab.json");
        if (File.Exists(vocab) && File.Exists(merges))
        {
            return ByteLevelBpeTokenizer.FromVocabAndMerges(vocab, merges);
        }
        throw new FileNotFoundException(
            $"No tokenizer in '{modelDirectory}': looked for 'tokenizer.json', or 'vocab.json' with 'merges.txt'; name one, or \"{Bytes}\" for the byte tokenizer.");
    }
}
