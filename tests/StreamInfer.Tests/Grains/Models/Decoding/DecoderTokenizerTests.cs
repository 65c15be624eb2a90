using StreamInfer.Grains.Models.Decoding;

namespace StreamInfer.Tests.Grains.Models.Decoding;

public sealed class DecoderTokenizerTests : IDisposable
{
    private const string Mixed = "héllo 😀 世界";

    private readonly TinyBpeFiles _files = new();

    public void Dispose() => _files.Dispose();

    [Fact]
    public void ByteTokenizer_Encode_GivesUtf8BytesAndRoundTrips()
    {
        var tokenizer = ByteTokenizer.Instance;

        var ids = tokenizer.Encode(Mixed);

        Assert.Equal(TinyBpeFiles.Utf8(Mixed).Select(b => (int)b), ids);
        Assert.Equal(TinyBpeFiles.Utf8(Mixed), TinyBpeFiles.Concat(tokenizer, ids));
        Assert.Equal(Mixed, tokenizer.Decode(ids));
        Assert.Equal(257, tokenizer.VocabSize);
        Assert.Equal(256, tokenizer.EndOfTextId);
    }

    [Fact]
    public void ByteTokenizer_EndOfTextInText_IsEncodedAsPlainBytes()
    {
        var tokenizer = ByteTokenizer.Instance;

        var ids = tokenizer.Encode("<|endoftext|>");

        Assert.DoesNotContain(256, ids);
        Assert.True(tokenizer.IsSpecial(256));
        Assert.False(tokenizer.IsSpecial(255));
        Assert.True(tokenizer.TokenBytes(256).IsEmpty);
        Assert.True(tokenizer.TokenBytes(-1).IsEmpty);
    }

    [Fact]
    public void VocabAndMerges_Encode_AppliesMerges()
    {
        var tokenizer = DecoderTokenizers.Load(_files.WriteVocabAndMerges(), null);

        Assert.Equal([TinyBpeFiles.Hello, TinyBpeFiles.World], tokenizer.Encode("hello world"));
        Assert.Equal(['h', TinyBpeFiles.EAcute, TinyBpeFiles.Ll, 'o'], tokenizer.Encode("héllo"));
        Assert.Equal(new byte[] { 0xC3, 0xA9 }, tokenizer.TokenBytes(TinyBpeFiles.EAcute).ToArray());
        Assert.Equal(" world"u8.ToArray(), tokenizer.TokenBytes(TinyBpeFiles.World).ToArray());
    }

    [Theory]
    [InlineData(Mixed)]
    [InlineData("hello world\n\n  tabs\tand 123 numbers, it's 'quoted'")]
    [InlineData("")]
    public void VocabAndMerges_TokenBytes_RoundTripsText(string text)
    {
        var tokenizer = DecoderTokenizers.Load(_files.WriteVocabAndMerges(), null);

        var ids = tokenizer.Encode(text);

        Assert.Equal(TinyBpeFiles.Utf8(text), TinyBpeFiles.Concat(tokenizer, ids));
        Assert.Equal(text, tokenizer.Decode(ids));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TokenizerJson_Encode_AgreesWithVocabAndMerges(bool mergesAsPairs)
    {
        var pair = ByteLevelBpeTokenizer.FromVocabAndMerges(
            Path.Combine(_files.WriteVocabAndMerges(), "vocab.json"), Path.Combine(_files.Folder, "merges.txt"));
        var json = DecoderTokenizers.Load(_files.WriteTokenizerJson(mergesAsPairs), null);

        Assert.IsType<ByteLevelBpeTokenizer>(json);
        foreach (var text in new[] { Mixed, "hello world", "the world, held: 42 hellos" })
        {
            Assert.Equal(pair.Encode(text), json.Encode(text));
            Assert.Equal(TinyBpeFiles.Utf8(text), TinyBpeFiles.Concat(json, json.Encode(text)));
        }
        Assert.Equal(pair.VocabSize, json.VocabSize);
        for (var id = 0; id < pair.VocabSize; id++)
        {
            Assert.Equal(pair.TokenBytes(id).ToArray(), json.TokenBytes(id).ToArray());
        }
    }

    [Fact]
    public void Load_EndOfText_IsSpecialWithNoBytes()
    {
        var tokenizer = DecoderTokenizers.Load(_files.WriteTokenizerJson(), null);

        Assert.Equal(TinyBpeFiles.EndOfText, tokenizer.EndOfTextId);
        Assert.Equal(TinyBpeFiles.EndOfText + 1, tokenizer.VocabSize);
        Assert.True(tokenizer.IsSpecial(TinyBpeFiles.EndOfText));
        Assert.False(tokenizer.IsSpecial(TinyBpeFiles.Hello));
        Assert.True(tokenizer.TokenBytes(TinyBpeFiles.EndOfText).IsEmpty);
        Assert.Equal("hello", tokenizer.Decode([TinyBpeFiles.Hello, TinyBpeFiles.EndOfText]));
        Assert.DoesNotContain(TinyBpeFiles.EndOfText, tokenizer.Encode("hello<|endoftext|>"));
    }

    [Fact]
    public void Load_Bytes_GivesByteTokenizer()
    {
        Assert.Same(ByteTokenizer.Instance, DecoderTokenizers.Load(_files.Folder, "bytes"));
    }

    [Fact]
    public void Load_NamedFile_LoadsThatFile()
    {
        _files.WriteTokenizerJson(fileName: "other.json");

        var tokenizer = DecoderTokenizers.Load(_files.Folder, "other.json");

        Assert.Equal([TinyBpeFiles.Hello], tokenizer.Encode("hello"));
    }

    [Fact]
    public void Load_EmptyFolder_ThrowsNamingFilesLookedFor()
    {
        var error = Assert.Throws<FileNotFoundException>(() => DecoderTokenizers.Load(_files.Folder, null));

        Assert.Contains("tokenizer.json", error.Message, StringComparison.Ordinal);
        Assert.Contains("vocab.json", error.Message, StringComparison.Ordinal);
        Assert.Contains("merges.txt", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_MissingNamedFile_ThrowsNamingIt()
    {
        var error = Assert.Throws<FileNotFoundException>(() => DecoderTokenizers.Load(_files.Folder, "nope.json"));

        Assert.Contains("nope.json", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{ not json", "not valid JSON")]
    [InlineData("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}", "'a'")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a\"]}, \"pre_tokenizer\": null}", "merges[0]")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Metaspace\"}}", "ByteLevel")]
    public void Load_BadTokenizerJson_ThrowsInvalidDataNamingFileAndReason(string content, string reason)
    {
        File.WriteAllText(Path.Combine(_files.Folder, "tokenizer.json"), content);

        var error = Assert.Throws<InvalidDataException>(() => DecoderTokenizers.Load(_files.Folder, null));

        Assert.Contains("tokenizer.json", error.Message, StringComparison.Ordinal);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_BadMergesLine_ThrowsNamingLine()
    {
        _files.WriteVocabAndMerges();
        File.WriteAllText(Path.Combine(_files.Folder, "merges.txt"), "#version: 0.2\nh e\nhello\n");

        var error = Assert.Throws<InvalidDataException>(() => DecoderTokenizers.Load(_files.Folder, null));

        Assert.Contains("merges.txt", error.Message, StringComparison.Ordinal);
        Assert.Contains("line 3", error.Message, StringComparison.Ordinal);
    }
}
