using System.Threading.Channels;
using StreamInfer.Frontend.Http;
using StreamInfer.Grains.Metrics;

namespace StreamInfer.Frontend.OpenAI;

/// <summary>
/// A completion answered as Server-Sent Events: the status and headers wait for the admission, so that a refusal is
/// still an HTTP error; then each token is a chunk, the end a last chunk (then a usage chunk when asked), then <c>[DONE]</c>.
/// </summary>
internal sealed partial class OpenAIEventStream : ITokenSink
{
    /// <summary>Tokens buffered for a reader slower than generation; past it the request is dropped rather than
    /// buffered without bound.</summary>
    private const int BufferTokens = 4096;

    private readonly Channel<(GeneratedToken Token, DateTimeOffset ProducedAt)> _tokens =
        Channel.CreateBounded<(GeneratedToken, DateTimeOffset)>(new BoundedChannelOptions(BufferTokens) { SingleReader = true, SingleWriter = true });

    private volatile bool _overflowed;

    /// <summary>Streams the completion; a refusal is answered as an error result instead, and a stream as an empty one.</summary>
    public static async Task<IResult> RunAsync(HttpContext context, InferenceServices services, OpenAIRequest request, bool chat, string id, long created)
    {
        var stream = new OpenAIEventStream();
        var call = HttpCall.Start(context, services.Submitter, request.ToInfer(), stream);
        if (!await call.AdmitAsync())
        {
            var refused = await call.EndAsync();
            return refused.Abandoned
                ? Results.Empty
                : OpenAIErrors.Result(refused.Error ?? new InferError(ErrorCode.Internal, "the request ended before it started."));
        }

        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "text/event-stream; charset=utf-8";
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers["X-Accel-Buffering"] = "no";
        using var sse = new SseWriter(context, id, created, request.Model, chat, request.IncludeUsage);
        try
        {
            if (chat)
            {
                await sse.ChunkAsync(role: "assistant", text: string.Empty, finishReason: null);
            }

            await foreach (var (token, producedAt) in stream._tokens.Reader.ReadAllAsync(context.RequestAborted))
            {
                if (stream._overflowed)
                {
                    // Cut off at once, not after writing out the whole buffer it could not keep up with.
                    break;
                }

                if (token.Text.Length > 0)
                {
                    await sse.ChunkAsync(null, token.Text, null);
                    if (producedAt != default)
                    {
                        services.Metrics.Delivered(GridMetrics.EventStreamPath, (services.Time.GetUtcNow() - producedAt).TotalSeconds);
                    }
                }
            }

            if (stream._overflowed)
            {
                // As a WebSocket client that does not read is dropped: the caller is cut off and its sequence cancelled.
                LogSlowStream(services.Loggers.CreateLogger<OpenAIEventStream>(), BufferTokens);
                context.Abort();
                return Results.Empty;
            }

            var outcome = await call.EndAsync();
            if (outcome.Abandoned)
            {
                return Results.Empty;
            }

            if (outcome.Done is { } done)
            {
                if (done.Text.Length > 0)
                {
                    await sse.ChunkAsync(null, done.Text, null);
                }

                await sse.ChunkAsync(null, null, done.FinishReason);
                if (request.IncludeUsage)
                {
                    await sse.UsageAsync(done);
                }
            }
            else
            {
                await sse.ErrorAsync(outcome.Error ?? new InferError(ErrorCode.Internal, "the model answered with tensors, not text."));
            }

            await sse.DoneAsync();
        }
        catch (OperationCanceledException)
        {
            // The caller hung up.
        }
        finally
        {
            // Whatever cut the stream short cancels the sequence; after its end this does nothing.
            call.Abandon();
        }

        return Results.Empty;
    }

    void ITokenSink.Write(GeneratedToken token, DateTimeOffset producedAt)
    {
        if (!_tokens.Writer.TryWrite((token, producedAt)))
        {
            _overflowed = true;
            _tokens.Writer.TryComplete();
        }
    }

    void ITokenSink.Complete() => _tokens.Writer.TryComplete();

    [LoggerMessage(Level = LogLevel.Warning, Message = "An event stream fell {Tokens} tokens behind its generation; the caller was dropped")]
    private static partial void LogSlowStream(ILogger logger, int tokens);
}
