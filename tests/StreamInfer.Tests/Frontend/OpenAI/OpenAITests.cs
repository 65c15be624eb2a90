using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.OpenAI;

/// <summary>The OpenAI-compatible API on the built-in tiny-lm: JSON answers, Server-Sent Event streams, errors.</summary>
[Collection(FrontendCollection.Name)]
public sealed class OpenAITests(FrontendFixture fixture)
{
    [Fact]
    public async Task Completions_NotStreamed_OpenAIShapeWithUsageAndDefaultSixteenTokens()
    {
        using var response = await fixture.Http.PostAsJsonAsync("/v1/completions", new { model = "tiny-lm", prompt = "Once", temperature = 0 });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var root = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.StartsWith("cmpl-", root.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("text_completion", root.GetProperty("object").GetString());
        Assert.Equal("tiny-lm", root.GetProperty("model").GetString());
        Assert.Equal("1", root.GetProperty("model_version").GetString());
        var choice = Assert.Single(root.GetProperty("choices").EnumerateArray());
        Assert.Equal(0, choice.GetProperty("index").GetInt32());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(JsonValueKind.String, choice.GetProperty("text").ValueKind);
        var usage = root.GetProperty("usage");
        // tiny-lm's tokenizer is one token per byte (README, the tokenizer row).
        Assert.Equal(Encoding.UTF8.GetByteCount("Once"), usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(16, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + 16, usage.GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task Completions_Streamed_ChunksThenDoneAndTheSameTextAsNotStreamed()
    {
        var body = new { model = "tiny-lm", prompt = "Streams", max_tokens = 20, temperature = 0 };
        using var whole = await fixture.Http.PostAsJsonAsync("/v1/completions", body);
        var expected = (await whole.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("choices")[0].GetProperty("text").GetString();

        var (contentType, events) = await StreamAsync("/v1/completions", new { model = "tiny-lm", prompt = "Streams", max_tokens = 20, temperature = 0, stream = true, stream_options = new { include_usage = true } });

        Assert.Equal("text/event-stream", contentType);
        Assert.Equal("[DONE]", events[^1]);
        var all = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(all, c => Assert.Equal("text_completion", c.GetProperty("object").GetString()));
        Assert.Single(all.Select(c => c.GetProperty("id").GetString()).Distinct());

        // include_usage, as OpenAI streams it: usage null on every chunk, then one chunk with no choices and the usage.
        var usage = all[^1];
        Assert.Equal(0, usage.GetProperty("choices").GetArrayLength());
        Assert.Equal(20, usage.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        var chunks = all[..^1];
        Assert.All(chunks, c => Assert.Equal(JsonValueKind.Null, c.GetProperty("usage").ValueKind));
        var text = string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.Equal(expected, text);
        Assert.Equal("length", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.All(chunks[..^1], c => Assert.Equal(JsonValueKind.Null, c.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind));
    }

    [Fact]
    public async Task ChatCompletions_Streamed_RoleFirstThenContentDeltasThenFinish()
    {
        var (_, events) = await StreamAsync("/v1/chat/completions", new
        {
            model = "tiny-lm",
            messages = new object[] { new { role = "system", content = "Be brief." }, new { role = "user", content = new object[] { new { type = "text", text = "Hi" } } } },
            max_tokens = 8,
            temperature = 0,
            stream = true,
        });

        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        Assert.Equal("length", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.False(chunks[^1].TryGetProperty("usage", out _));
    }

    [Fact]
    public async Task ChatCompletions_NotStreamed_AssistantMessageForTheDocumentedPrompt()
    {
        var root = await ChatAsync("Hello", maxTokens: 6);

        Assert.Equal("chat.completion", root.GetProperty("object").GetString());
        var message = root.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("assistant", message.GetProperty("role").GetString());
        Assert.Equal(JsonValueKind.String, message.GetProperty("content").ValueKind);
        // A chat is one "role: content" line per message, then "assistant:" (README): the same as this plain completion.
        using var plain = await fixture.Http.PostAsJsonAsync("/v1/completions", new { model = "tiny-lm", prompt = "user: Hello\nassistant:", max_tokens = 6, temperature = 0 });
        var completion = await plain.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(completion.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), root.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(completion.GetProperty("choices")[0].GetProperty("text").GetString(), message.GetProperty("content").GetString());
        // tiny-lm's tokenizer is one token per byte (README, the tokenizer row).
        Assert.Equal(Encoding.UTF8.GetByteCount("user: Hello\nassistant:"), root.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task ChatCompletions_LongerMessage_PromptTokensGrowByItsExtraBytesAndTotalIsTheSum()
    {
        const string Extra = ", wörld";
        var shorter = (await ChatAsync("Hello", maxTokens: 3)).GetProperty("usage");
        var longer = (await ChatAsync("Hello" + Extra, maxTokens: 3)).GetProperty("usage");

        Assert.Equal(Encoding.UTF8.GetByteCount(Extra), longer.GetProperty("prompt_tokens").GetInt32() - shorter.GetProperty("prompt_tokens").GetInt32());
        foreach (var usage in new[] { shorter, longer })
        {
            Assert.Equal(3, usage.GetProperty("completion_tokens").GetInt32());
            Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32());
        }
    }

    [Theory]
    [InlineData("/v1/completions", """{"model":"no-such","prompt":"x"}""", HttpStatusCode.NotFound, "unknown_model", null, "invalid_request_error")]
    [InlineData("/v1/completions", """{"model":"no-such","prompt":"x","stream":true}""", HttpStatusCode.NotFound, "unknown_model", null, "invalid_request_error")]
    [InlineData("/v1/completions", """{"model":"tiny-lm","prompt":"x","n":2}""", HttpStatusCode.BadRequest, "invalid_input", "n", "invalid_request_error")]
    [InlineData("/v1/completions", """{"model":"tiny-lm"}""", HttpStatusCode.BadRequest, "invalid_input", "prompt", "invalid_request_error")]
    [InlineData("/v1/completions", """{"model":"tiny-lm","prompt":"x","temperature":9}""", HttpStatusCode.BadRequest, "invalid_input", null, "invalid_request_error")]
    [InlineData("/v1/chat/completions", """{"model":"tiny-lm","messages":[{"role":"wizard","content":"x"}]}""", HttpStatusCode.BadRequest, "invalid_input", "messages[0].role", "invalid_request_error")]
    [InlineData("/v1/chat/completions", """{"model":"tiny-lm","messages":[]}""", HttpStatusCode.BadRequest, "invalid_input", "messages", "invalid_request_error")]
    [InlineData("/v1/chat/completions", """{"model":""", HttpStatusCode.BadRequest, "bad_request", null, "invalid_request_error")]
    [InlineData("/v1/completions", """{"model":"echo","prompt":"x"}""", HttpStatusCode.BadRequest, "invalid_input", null, "invalid_request_error")]
    public async Task Endpoints_BadRequest_OpenAIErrorShape(string path, string body, HttpStatusCode status, string code, string? param, string type)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await fixture.Http.PostAsync(path, content);

        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {status}, got {response.StatusCode}: {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        // OpenAI's type for a request the caller must change (400, 404): invalid_request_error.
        Assert.Equal(type, error.GetProperty("type").GetString());
        if (param is not null)
        {
            Assert.Equal(param, error.GetProperty("param").GetString());
        }
    }

    [Fact]
    public async Task Models_ListsDecoderModels()
    {
        var root = await fixture.Http.GetFromJsonAsync<JsonElement>("/v1/models");

        Assert.Equal("list", root.GetProperty("object").GetString());
        var ids = root.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToList();
        Assert.Contains("tiny-lm", ids);
        Assert.DoesNotContain("echo", ids);
    }

    [Fact]
    public async Task Completions_CallerHangsUpMidStream_SequenceLeaves()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { model = "tiny-lm-1", prompt = "endless", max_tokens = 1000, temperature = 0, stream = true }),
        };
        var response = await fixture.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var stream = await response.Content.ReadAsStreamAsync();
        using (var reader = new StreamReader(stream))
        {
            var first = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.StartsWith("data: {", first, StringComparison.Ordinal);
            await Eventually.UntilAsync(() => fixture.Batcher("tiny-lm-1").GetStatusAsync(), s => s.Sequences == 1, what: "the sequence runs");
        }

        response.Dispose();

        await Eventually.UntilAsync(() => fixture.Batcher("tiny-lm-1").GetStatusAsync(), s => s.Sequences == 0, what: "the sequence leaves after the caller hangs up");
    }

    /// <summary>Posts a streaming request and reads every event's data until the server ends the response.</summary>
    private async Task<JsonElement> ChatAsync(string userMessage, int maxTokens)
    {
        using var response = await fixture.Http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "tiny-lm",
            messages = new[] { new { role = "user", content = userMessage } },
            max_tokens = maxTokens,
            temperature = 0,
        });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    private async Task<(string? ContentType, List<string> Events)> StreamAsync(string path, object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        using var response = await fixture.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = new List<string>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)) is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                events.Add(line["data: ".Length..]);
            }
            else
            {
                Assert.Equal(string.Empty, line);
            }
        }

        return (response.Content.Headers.ContentType?.MediaType, events);
    }
}
