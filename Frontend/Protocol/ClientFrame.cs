namespace StreamInfer.Frontend.Protocol;

/// <summary>A parsed client frame: an inference request, a cancel, or a structured error for a frame that is neither.</summary>
internal abstract record ClientFrame
{
    private ClientFrame()
    {
    }

    /// <summary>An <c>infer</c> frame. <see cref="Request"/>'s ReplyTo is filled in by the connection.</summary>
    public sealed record Infer(string Id, string Model, System.Collections.Immutable.ImmutableArray<NamedTensor> Inputs, string? Prompt, TimeSpan? Timeout, int? Priority = null) : ClientFrame;

    /// <summary>A <c>cancel</c> frame.</summary>
    public sealed record Cancel(string Id) : ClientFrame;

    /// <summary>A frame that could not be understood; <see cref="Id"/> is set when the frame carried one.</summary>
    public sealed record Invalid(string? Id, ErrorCode Code, string Message) : ClientFrame;
}
