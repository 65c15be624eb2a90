using System.Text;
using System.Text.Json;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.OpenAI;

/// <summary>
/// An OpenAI completions or chat completions request, parsed. Fields StreamInfer does not serve are refused when they
/// would change the answer (<c>n</c> other than 1, <c>logprobs</c>, <c>echo</c>, tools) and ignored when they would
/// not (<c>user</c>, <c>presence_penalty</c> of 0...).
/// </summary>
internal sealed record OpenAIRequest(string Model, string Prompt, GenerationOptions? Generation, bool Stream, bool IncludeUsage, TimeSpan? Timeout)
{
    /// <summary>OpenAI's default <c>max_tokens</c> for legacy completions.</summary>
    public const int CompletionsDefaultMaxTokens = 16;

    /// <summary>The request as the grid takes it: a prompt, without an id of the caller's.</summary>
    public ClientFrame.Infer ToInfer() => new(string.Empty, Model, [], Prompt, Timeout, null, Generation, Stream);

    /// <summary>Parses a body; on failure returns the error and the parameter at fault.</summary>
    public static (OpenAIRequest? Request, InferError? Error, string? Param) Parse(ReadOnlyMemory<byte> body, bool chat)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException ex)
        {
            return (null, new InferError(ErrorCode.BadRequest, $"the body is not valid JSON: {ex.Message}"), null);
        }

        using (document)
        {
            try
            {
                return ParseRoot(document.RootElement, chat);
            }
            catch (InvalidOperationException)
            {
                return (null, new InferError(ErrorCode.BadRequest, "the body holds a string that is not valid UTF-8 text."), null);
            }
        }
    }

    /// <summary>
    /// The prompt a chat becomes: one line per message, <c>role: content</c>, then <c>assistant:</c> for the model to
    /// continue. A plain template that any base model can follow; models with a chat template of their own are a later
    /// refinement.
    /// </summary>
    public static string RenderChat(IEnumerable<(string Role, string Content)> messages)
    {
        var prompt = new StringBuilder();
        foreach (var (role, content) in messages)
        {
            prompt.Append(role).Append(": ").Append(content).Append('\n');
        }

        return prompt.Append("assistant:").ToString();
    }

    private static (OpenAIRequest?, InferError?, string?) ParseRoot(JsonElement root, bool chat)
    {
        static (OpenAIRequest?, InferError?, string?) Bad(string param, string message) => (null, new InferError(ErrorCode.InvalidInput, message), param);

        if (root.ValueKind != JsonValueKind.Object)
        {
            return (null, new InferError(ErrorCode.BadRequest, "the body must be a JSON object."), null);
        }

        if (!root.TryGetProperty("model", out var modelElement) || modelElement.ValueKind != JsonValueKind.String || modelElement.GetString() is not { Length: > 0 } model)
        {
            return Bad("model", "'model' must be the name of a served model (GET /v1/models lists them).");
        }

        string prompt;
        if (chat)
        {
            if (!root.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
            {
                return Bad("messages", "'messages' must be a non-empty array of {\"role\", \"content\"}.");
            }

            var turns = new List<(string, string)>();
            var i = 0;
            foreach (var message in messages.EnumerateArray())
            {
                if (message.ValueKind != JsonValueKind.Object
                    || !message.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                    || role.GetString() is not ("system" or "developer" or "user" or "assistant"))
                {
                    return Bad($"messages[{i}].role", $"messages[{i}] needs a 'role' of \"system\", \"developer\", \"user\" or \"assistant\".");
                }

                if (ContentText(message) is not { } content)
                {
                    return Bad($"messages[{i}].content", $"messages[{i}].content must be a string or an array of text parts.");
                }

                turns.Add((role.GetString()!, content));
                i++;
            }

            prompt = RenderChat(turns);
        }
        else
        {
            if (!root.TryGetProperty("prompt", out var promptElement))
            {
                return Bad("prompt", "'prompt' is required.");
            }

            if (promptElement.ValueKind == JsonValueKind.String)
            {
                prompt = promptElement.GetString()!;
            }
            else if (promptElement.ValueKind == JsonValueKind.Array && promptElement.GetArrayLength() == 1 && promptElement[0].ValueKind == JsonValueKind.String)
            {
                prompt = promptElement[0].GetString()!;
            }
            else
            {
                return Bad("prompt", "'prompt' must be a string (or an array of one string; batches of prompts are sent as separate requests).");
            }
        }

        if (root.TryGetProperty("n", out var n) && n.ValueKind != JsonValueKind.Null && !(n.ValueKind == JsonValueKind.Number && n.TryGetInt32(out var count) && count == 1))
        {
            return Bad("n", "only n = 1 is served; send separate requests for several choices.");
        }

        foreach (var unsupported in new[] { "logprobs", "top_logprobs", "echo", "best_of", "suffix", "tools", "functions", "logit_bias" })
        {
            if (root.TryGetProperty(unsupported, out var value) && value.ValueKind is not (JsonValueKind.Null or JsonValueKind.False)
                && !(unsupported == "best_of" && value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var b) && b == 1)
                && !(unsupported is "tools" or "functions" && value.ValueKind == JsonValueKind.Array && value.GetArrayLength() == 0))
            {
                return Bad(unsupported, $"'{unsupported}' is not supported by StreamInfer.");
            }
        }

        var (generation, error) = RequestParser.ParseGeneration(root);
        if (error is not null)
        {
            return (null, new InferError(ErrorCode.InvalidInput, error), null);
        }

        // OpenAI's legacy completions default to 16 tokens; chat to as many as fit.
        if (!chat && generation?.MaxTokens is null)
        {
            generation = (generation ?? new GenerationOptions()) with { MaxTokens = CompletionsDefaultMaxTokens };
        }

        // OpenAI samples at temperature 1 unless told otherwise; the WebSocket protocol's default is the model's.
        if (generation?.Temperature is null)
        {
            generation = (generation ?? new GenerationOptions()) with { Temperature = 1.0 };
        }

        var stream = false;
        if (root.TryGetProperty("stream", out var streamElement) && streamElement.ValueKind != JsonValueKind.Null)
        {
            if (streamElement.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return Bad("stream", "'stream' must be true or false.");
            }

            stream = streamElement.GetBoolean();
        }

        var includeUsage = root.TryGetProperty("stream_options", out var streamOptions) && streamOptions.ValueKind == JsonValueKind.Object
            && streamOptions.TryGetProperty("include_usage", out var usage) && usage.ValueKind == JsonValueKind.True;

        TimeSpan? timeout = null;
        if (root.TryGetProperty("timeout_ms", out var t) && t.ValueKind != JsonValueKind.Null)
        {
            if (t.ValueKind != JsonValueKind.Number || !t.TryGetDouble(out var ms) || ms < 1 || ms > TimeSpan.FromHours(1).TotalMilliseconds)
            {
                return Bad("timeout_ms", "'timeout_ms' must be a number of milliseconds from 1 to 3600000.");
            }

            timeout = TimeSpan.FromMilliseconds(ms);
        }

        return (new OpenAIRequest(model, prompt, generation, stream, includeUsage, timeout), null, null);
    }

    /// <summary>A message's text: a string, or the concatenated <c>text</c> of its text parts.</summary>
    private static string? ContentText(JsonElement message)
    {
        if (!message.TryGetProperty("content", out var content))
        {
            return null;
        }

        if (content.ValueKind == JsonValueKind.String)
        {
            return content.GetString();
        }

        if (content.ValueKind != JsonValueKind.Array)
        {
            return null;
        }

        var text = new StringBuilder();
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.GetString() != "text"
                || !part.TryGetProperty("text", out var partText) || partText.ValueKind != JsonValueKind.String)
            {
                return null;
            }

            text.Append(partText.GetString());
        }

        return text.ToString();
    }
}
