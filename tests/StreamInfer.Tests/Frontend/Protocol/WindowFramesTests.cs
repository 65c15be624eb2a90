using System.Buffers.Binary;
using System.Text.Json;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Protocol;

/// <summary>A sequence's window as the frames carry it: in a JSON result, in a binary result's header, and as an
/// <c>event</c> frame; a result without one is written as before.</summary>
public sealed class WindowFramesTests
{
    private static readonly SequenceWindow Window = new("output", 7, 4, 0.625, 0.875, WindowEvents.On);

    [Fact]
    public void Result_WithWindow_CarriesItAfterTheTiming()
    {
        using var frame = JsonDocument.Parse(FrameWriter.Result("c7", Result(Window)));

        AssertWindow(frame.RootElement.GetProperty("window"), WindowEvents.On);
    }

    [Fact]
    public void Result_WindowWithoutEvent_NoEventField()
    {
        using var frame = JsonDocument.Parse(FrameWriter.Result("c7", Result(Window with { Event = null })));

        AssertWindow(frame.RootElement.GetProperty("window"), null);
    }

    [Fact]
    public void Result_NoWindow_NoWindowField()
    {
        using var frame = JsonDocument.Parse(FrameWriter.Result("c7", Result(null)));

        Assert.False(frame.RootElement.TryGetProperty("window", out _));
    }

    [Fact]
    public void BinaryResult_WithWindow_HeaderCarriesIt()
    {
        var binary = FrameWriter.BinaryResult("c7", Result(Window));
        try
        {
            var bytes = binary.Memory.Span;
            var length = BinaryPrimitives.ReadInt32LittleEndian(bytes);
            using var header = JsonDocument.Parse(bytes.Slice(4, length).ToArray());

            AssertWindow(header.RootElement.GetProperty("window"), WindowEvents.On);
        }
        finally
        {
            binary.Return();
        }
    }

    [Fact]
    public void Event_NamesTheRequestSequenceAndCrossing()
    {
        using var frame = JsonDocument.Parse(FrameWriter.Event("c7", "mic-1", Window));
        var root = frame.RootElement;

        Assert.Equal("event", root.GetProperty("type").GetString());
        Assert.Equal("c7", root.GetProperty("id").GetString());
        Assert.Equal("mic-1", root.GetProperty("sequence_id").GetString());
        Assert.Equal("on", root.GetProperty("event").GetString());
        Assert.Equal("output", root.GetProperty("output").GetString());
        Assert.Equal(0.625, root.GetProperty("value").GetDouble());
        Assert.Equal(7, root.GetProperty("index").GetInt32());
    }

    private static InferResult Result(SequenceWindow? window)
        => new("vad-lite", "1", [new NamedTensor("output", Tensors.Floats([1, 1], 0.875f))], new Timing(0.1, 0.2, 3), window);

    private static void AssertWindow(JsonElement window, string? raised)
    {
        Assert.Equal("output", window.GetProperty("output").GetString());
        Assert.Equal(7, window.GetProperty("index").GetInt32());
        Assert.Equal(4, window.GetProperty("count").GetInt32());
        Assert.Equal(0.625, window.GetProperty("mean").GetDouble());
        Assert.Equal(0.875, window.GetProperty("max").GetDouble());
        Assert.Equal(raised, window.TryGetProperty("event", out var e) ? e.GetString() : null);
    }
}
