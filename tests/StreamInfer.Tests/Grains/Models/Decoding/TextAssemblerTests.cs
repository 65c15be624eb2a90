using System.Text;
using StreamInfer.Grains.Models.Decoding;

namespace StreamInfer.Tests.Grains.Models.Decoding;

public sealed class TextAssemblerTests
{
    private static readonly ByteTokenizer Bytes = ByteTokenizer.Instance;

    [Fact]
    public void Append_MultibyteCharsByteByByte_EmitsOnlyWholeCharacters()
    {
        const string text = "héllo 😀 世界";
        var assembler = new TextAssembler(Bytes);
        var joined = new StringBuilder();

        foreach (var id in Bytes.Encode(text))
        {
            var delta = assembler.Append(id);
            Assert.False(delta.Stopped);
            Assert.DoesNotContain('\uFFFD', delta.Text);
            Assert.True(IsWellFormed(delta.Text), $"delta '{delta.Text}' splits a surrogate pair");
            joined.Append(delta.Text);
        }
        joined.Append(assembler.Finish().Text);

        Assert.Equal(text, joined.ToString());
        Assert.Equal(text, assembler.Text);
    }

    [Fact]
    public void Append_StopSpanningTokens_StopsBeforeIt()
    {
        var assembler = new TextAssembler(Bytes, ["\n\nUser:"]);

        var (emitted, stopped) = Feed(assembler, "Answer.\n\nUser: more");

        Assert.True(stopped);
        Assert.Equal("Answer.", emitted);
        Assert.Equal("Answer.", assembler.Text);
        Assert.True(assembler.Stopped);
    }

    [Fact]
    public void Append_FalseStart_IsReleasedOnceItCannotBeAStop()
    {
        var assembler = new TextAssembler(Bytes, ["END"]);

        Assert.Equal("a", assembler.Append('a').Text);
        Assert.Equal("", assembler.Append('E').Text);
        Assert.Equal("", assembler.Append('N').Text);
        var delta = assembler.Append('X');

        Assert.Equal("ENX", delta.Text);
        Assert.False(delta.Stopped);
        Assert.Equal("aENX", assembler.Text);
    }

    [Fact]
    public void Append_FalseStartOverlappingRealStop_StopsAtTheRealOne()
    {
        var assembler = new TextAssembler(Bytes, ["abc"]);

        var (emitted, stopped) = Feed(assembler, "xababcyz");

        Assert.True(stopped);
        Assert.Equal("xab", emitted);
    }

    [Fact]
    public void Append_StopAtTheVeryBeginning_EmitsNothing()
    {
        var assembler = new TextAssembler(Bytes, ["###"]);

        var (emitted, stopped) = Feed(assembler, "### after");

        Assert.True(stopped);
        Assert.Equal("", emitted);
        Assert.Equal("", assembler.Text);
    }

    [Fact]
    public void Append_SeveralStops_TheEarliestWins()
    {
        var assembler = new TextAssembler(Bytes, ["zzz", "b", "ab"]);

        var (emitted, stopped) = Feed(assembler, "xxabzzz");

        Assert.True(stopped);
        Assert.Equal("xx", emitted);
    }

    [Fact]
    public void Append_AfterStop_AddsNothing()
    {
        var assembler = new TextAssembler(Bytes, ["!"]);
        Feed(assembler, "hi!");

        var delta = assembler.Append('x');

        Assert.Equal(new TextDelta("", true), delta);
        Assert.Equal(new TextDelta("", true), assembler.Finish());
        Assert.Equal("hi", assembler.Text);
    }

    [Fact]
    public void Append_InvalidByte_YieldsReplacementCharacter()
    {
        var assembler = new TextAssembler(Bytes);

        var (emitted, _) = Feed(assembler, [(int)'a', 0xFF, (int)'b']);

        Assert.Equal("a\uFFFDb", emitted + assembler.Finish().Text);
    }

    [Fact]
    public void Finish_UnfinishedCharacter_BecomesReplacementCharacter()
    {
        var assembler = new TextAssembler(Bytes);

        Assert.Equal("a", assembler.Append('a').Text);
        Assert.Equal("", assembler.Append(0xE4).Text);

        Assert.Equal("\uFFFD", assembler.Finish().Text);
    }

    [Fact]
    public void Finish_HeldStopPrefix_IsFlushed()
    {
        var assembler = new TextAssembler(Bytes, ["</s>"]);

        var (emitted, stopped) = Feed(assembler, "done</");
        var final = assembler.Finish();

        Assert.False(stopped);
        Assert.Equal("done", emitted);
        Assert.Equal(new TextDelta("</", false), final);
        Assert.Equal("done</", assembler.Text);
    }

    [Fact]
    public void Append_SpecialToken_ContributesNoText()
    {
        var assembler = new TextAssembler(Bytes);

        Assert.Equal("a", assembler.Append('a').Text);
        Assert.Equal(new TextDelta("", false), assembler.Append(ByteTokenizer.EndOfText));
        Assert.Equal("a", assembler.Text);
    }

    [Fact]
    public void Append_StopAcrossMultibyteCharacters_CutsBeforeIt()
    {
        var assembler = new TextAssembler(Bytes, ["世界"]);

        var (emitted, stopped) = Feed(assembler, "héllo 世界!");

        Assert.True(stopped);
        Assert.Equal("héllo ", emitted);
    }

    [Fact]
    public void Append_BpeTokens_ReassembleTheText()
    {
        using var files = new TinyBpeFiles();
        var tokenizer = DecoderTokenizers.Load(files.WriteTokenizerJson(), null);
        const string text = "hello world, héllo 😀 世界";
        var assembler = new TextAssembler(tokenizer, ["STOP"]);

        var (emitted, stopped) = Feed(assembler, [.. tokenizer.Encode(text), TinyBpeFiles.EndOfText]);

        Assert.False(stopped);
        Assert.Equal(text, emitted + assembler.Finish().Text);
    }

    private static (string Emitted, bool Stopped) Feed(TextAssembler assembler, string text) =>
        Feed(assembler, Bytes.Encode(text));

    private static (string Emitted, bool Stopped) Feed(TextAssembler assembler, IEnumerable<int> ids)
    {
        var emitted = new StringBuilder();
        foreach (var id in ids)
        {
            var delta = assembler.Append(id);
            emitted.Append(delta.Text);
            if (delta.Stopped)
            {
                return (emitted.ToString(), true);
            }
        }
        return (emitted.ToString(), false);
    }

    private static bool IsWellFormed(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]))
            {
                if (i + 1 >= text.Length || !char.IsLowSurrogate(text[i + 1]))
                {
                    return false;
                }
                i++;
            }
            else if (char.IsLowSurrogate(text[i]))
            {
                return false;
            }
        }
        return true;
    }
}
