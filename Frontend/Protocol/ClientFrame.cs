namespace StreamInfer.Frontend.Protocol;

/// <summary>A parsed client frame: an inference request, a cancel, or a structured error for a frame that is neither.</summary>
internal abstract record ClientFrame
{
    private ClientFrame()
    {
    }

    /// <summary>An <c>infer</c> frame. <see cref="Request"/>'s ReplyTo is filled in by the connection.</summary>
    /// <param name="Id">The client's id for the request.</param>
    /// <param name="Model">The model's name.</param>
    /// <param name="Inputs">Input tensors (tensor and echo models).</param>
    /// <param name="Prompt">Prompt text (decoder models).</param>
    /// <param name="Timeout">The client's deadline, or null for the default.</param>
    /// <param name="Priority">The priority level, or null for the model's default.</param>
    /// <param name="Generation">Generation settings of a text request, or null for the model's defaults.</param>
    /// <param name="Stream">For a text request, whether its tokens are sent as they come (<c>token</c> frames) or only
    /// with the end (<c>done</c> carries the text).</param>
    /// <param name="BinaryOutputs">Whether its result comes back as a binary WebSocket message (true) or JSON text
    /// (false); null for the default, which is the kind of frame the request came in.</param>
    /// <param name="Sequence">The stateful sequence it belongs to, or null (see <see cref="SequenceFields"/>).</param>
    public sealed record Infer(
        string Id,
        string Model,
        System.Collections.Immutable.ImmutableArray<NamedTensor> Inputs,
        string? Prompt,
        TimeSpan? Timeout,
        int? Priority = null,
        GenerationOptions? Generation = null,
        bool Stream = true,
        bool? BinaryOutputs = null,
        SequenceControl? Sequence = null) : ClientFrame;

    /// <summary>A <c>cancel</c> frame.</summary>
    public sealed record Cancel(string Id) : ClientFrame;

    /// <summary>A frame that could not be understood; <see cref="Id"/> is set when the frame carried one.</summary>
    public sealed record Invalid(string? Id, ErrorCode Code, string Message) : ClientFrame;
}
