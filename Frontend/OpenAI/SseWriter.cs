using System.Buffers;
using System.Text.Json;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.OpenAI;

/// <summary>
/// Writes OpenAI's stream chunks as Server-Sent Events, flushing each. With <paramref name="includeUsage"/> (the request's
/// <c>stream_options.include_usage</c>) every chunk carries <c>"usage": null</c> and the stream ends with one more chunk
/// whose <c>choices</c> are empty and whose <c>usage</c> counts the whole request, as OpenAI's API streams it.
/// </summary>
internal sealed class SseWriter(HttpContext context, string id, long created, string model, bool chat, bool includeUsage) : IDisposable
{
    private static readonly byte[] Data = "data: "u8.ToArray();
    private static readonly byte[] End = "\n\n"u8.ToArray();

    private static readonly byte[] DoneEvent = "data: [DONE]\n\n"u8.ToArray();

    // One writer per stream, reset onto the response's own pipe for each chunk: a chunk is serialized straight into
    // the pipe's buffer, without a buffer, a writer and a closure of its own.
    private Utf8JsonWriter? _writer;

    public Task ChunkAsync(string? role, string? text, string? finishReason)
    {
        var w = BeginChunk();
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        if (chat)
        {
            w.WriteStartObject("delta");
            if (role is not null)
            {
                w.WriteString("role", role);
            }

            if (text is not null)
            {
                w.WriteString("content", text);
            }

            w.WriteEndObject();
        }
        else
        {
            w.WriteString("text", text ?? string.Empty);
        }

        w.WriteNull("logprobs");
        if (finishReason is null)
        {
            w.WriteNull("finish_reason");
        }
        else
        {
            w.WriteString("finish_reason", finishReason);
        }

        w.WriteEndObject();
        w.WriteEndArray();
        if (includeUsage)
        {
            w.WriteNull("usage");
        }

        w.WriteEndObject();
        return EndAsync();
    }

    /// <summary>The chunk that ends a stream that asked for usage: no choices, the request's usage.</summary>
    public Task UsageAsync(GenerationDone done)
    {
        var w = BeginChunk();
        w.WriteStartArray("choices");
        w.WriteEndArray();
        FrameWriter.WriteUsage(w, done.PromptTokens, done.CompletionTokens);
        w.WriteString("model_version", done.ModelVersion);
        w.WriteEndObject();
        return EndAsync();
    }

    public Task ErrorAsync(InferError error)
    {
        OpenAIErrors.Write(Begin(), error, null);
        return EndAsync();
    }

    public async Task DoneAsync()
    {
        await context.Response.BodyWriter.WriteAsync(DoneEvent, context.RequestAborted);
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
    }

    public void Dispose()
    {
        // Drops a chunk cut short by an error rather than writing half of it into a response that may be over.
        _writer?.Reset();
        _writer?.Dispose();
    }

    /// <summary>Starts a chunk's event and object, with the fields every chunk carries.</summary>
    private Utf8JsonWriter BeginChunk()
    {
        var w = Begin();
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", chat ? "chat.completion.chunk" : "text_completion");
        w.WriteNumber("created", created);
        w.WriteString("model", model);
        return w;
    }

    /// <summary>Starts an event: its <c>data: </c> prefix, then the writer for its JSON.</summary>
    private Utf8JsonWriter Begin()
    {
        var body = context.Response.BodyWriter;
        body.Write(Data);
        if (_writer is null)
        {
            _writer = new Utf8JsonWriter(body, FrameWriter.Options);
        }
        else
        {
            _writer.Reset(body);
        }

        return _writer;
    }

    /// <summary>Ends the event and sends it.</summary>
    private async Task EndAsync()
    {
        _writer!.Flush();
        var body = context.Response.BodyWriter;
        body.Write(End);
        await body.FlushAsync(context.RequestAborted);
    }
}
