using System.Text.Json;

namespace StreamInfer.Frontend.Protocol;

/// <summary>A sequence's window as every transport carries it: a <c>window</c> object in JSON results, an <c>event</c>
/// frame on a WebSocket, and <c>parameters</c> in KServe answers (<see cref="WindowParameters"/>).</summary>
internal static partial class FrameWriter
{
    /// <summary>
    /// An <c>event</c> frame: the window of request <paramref name="id"/>'s sequence crossed a threshold with its result,
    /// which follows it. <paramref name="sequenceId"/> is the client's name for the sequence.
    /// </summary>
    public static byte[] Event(string id, string? sequenceId, SequenceWindow window) => Write((id, sequenceId, window), static (w, s) =>
    {
        w.WriteStartObject();
        w.WriteString("type", "event");
        w.WriteString("id", s.id);
        if (s.sequenceId is not null)
        {
            w.WriteString("sequence_id", s.sequenceId);
        }

        w.WriteString("event", s.window.Event);
        w.WriteString("output", s.window.Output);
        w.WriteNumber("value", s.window.Mean);
        w.WriteNumber("index", s.window.Index);
        w.WriteEndObject();
    });

    /// <summary>The <c>window</c> object of a result: the output, this result's index in its sequence, the values in the
    /// window, their mean and maximum, and the event the result raised, if any.</summary>
    public static void WriteWindow(Utf8JsonWriter w, SequenceWindow window)
    {
        w.WriteStartObject("window");
        w.WriteString("output", window.Output);
        w.WriteNumber("index", window.Index);
        w.WriteNumber("count", window.Count);
        w.WriteNumber("mean", window.Mean);
        w.WriteNumber("max", window.Max);
        if (window.Event is { } raised)
        {
            w.WriteString("event", raised);
        }

        w.WriteEndObject();
    }
}

/// <summary>The names a sequence's window goes by in a KServe answer's <c>parameters</c> (HTTP and gRPC).</summary>
internal static class WindowParameters
{
    public const string Output = "window_output";

    public const string Index = "window_index";

    public const string Count = "window_count";

    public const string Mean = "window_mean";

    public const string Max = "window_max";

    /// <summary>Present only on the answer whose result raised an event: <c>on</c> or <c>off</c>.</summary>
    public const string Event = "sequence_event";

    /// <summary>Writes the window's parameters as fields of the open JSON object.</summary>
    public static void Write(Utf8JsonWriter w, SequenceWindow window)
    {
        w.WriteString(Output, window.Output);
        w.WriteNumber(Index, window.Index);
        w.WriteNumber(Count, window.Count);
        w.WriteNumber(Mean, window.Mean);
        w.WriteNumber(Max, window.Max);
        if (window.Event is { } raised)
        {
            w.WriteString(Event, raised);
        }
    }
}
