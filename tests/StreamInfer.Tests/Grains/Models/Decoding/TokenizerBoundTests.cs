using StreamInfer.Grains.Models.Decoding;

namespace StreamInfer.Tests.Grains.Models.Decoding;

/// <summary>A prompt is tokenized no further than the model's context: the bound agrees with the whole encoding below it.</summary>
public sealed class TokenizerBoundTests : IDisposable
{
    private const string Text = "hello world, héllo 😀 世界 it's 123";

    private readonly TinyBpeFiles _files = new();

    public void Dispose() => _files.Dispose();

    [Fact]
    public void ByteTokenizer_TryEncode_WholeUpToTheBound_RefusedPastIt()
    {
        var tokenizer = ByteTokenizer.Instance;
        var whole = tokenizer.Encode(Text);

        Assert.True(tokenizer.TryEncode(Text, whole.Count, out var ids));
        Assert.Equal(whole, ids);
        Assert.False(tokenizer.TryEncode(Text, whole.Count - 1, out _));
        Assert.False(tokenizer.TryEncode(new string('x', 4_000_000), 16, out _));
    }

    [Fact]
    public void BpeTokenizer_TryEncode_WholeUpToTheBound_RefusedPastIt()
    {
        var tokenizer = DecoderTokenizers.Load(_files.WriteTokenizerJson(), "tokenizer.json");
        var whole = tokenizer.Encode(Text);

        Assert.True(tokenizer.TryEncode(Text, whole.Count, out var ids));
        Assert.Equal(whole, ids);
        Assert.True(tokenizer.TryEncode(Text, whole.Count + 5, out ids));
        Assert.Equal(whole, ids);
        Assert.False(tokenizer.TryEncode(Text, whole.Count - 1, out _));
        Assert.False(tokenizer.TryEncode(string.Concat(Enumerable.Repeat("hello world ", 200_000)), 16, out ids));
        Assert.True(ids.Count <= 16);
    }
}
