using System.Text.Json;
using StreamInfer.Tests.Grains.Models.Onnx;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.WebSockets.WebSocketBadInputTests;

namespace StreamInfer.Tests.Frontend.WebSockets;

/// <summary>
/// Stateful sequences over a WebSocket connection: misuse answered with structured errors while the connection keeps
/// serving, and a sequence's frames sent back to back answered in the order they were sent.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class SequenceFrameTests(FrontendFixture fixture)
{
    private const string Inputs = "\"inputs\":{\"x\":{\"dtype\":\"float32\",\"shape\":[1,2],\"data\":[1.5,2.5]}}";

    [Theory]
    [InlineData($"{{\"type\":\"infer\",\"id\":\"q1\",\"model\":\"vad\",{Inputs},\"sequence_id\":\"never-started\"}}", "unknown_sequence")]
    [InlineData($"{{\"type\":\"infer\",\"id\":\"q2\",\"model\":\"echo\",{Inputs},\"sequence_id\":\"\"}}", "bad_request")]
    [InlineData($"{{\"type\":\"infer\",\"id\":\"q3\",\"model\":\"echo\",{Inputs},\"sequence_id\":\"s\",\"sequence_start\":\"yes\"}}", "bad_request")]
    [InlineData($"{{\"type\":\"infer\",\"id\":\"q4\",\"model\":\"echo\",{Inputs},\"sequence_end\":true}}", "bad_request")]
    [InlineData($"{{\"type\":\"infer\",\"id\":\"q5\",\"model\":\"tiny-lm\",\"prompt\":\"hi\",\"sequence_id\":\"s\",\"sequence_start\":true}}", "invalid_input")]
    public async Task Frame_SequenceMisuse_StructuredErrorAndConnectionKeepsServing(string frame, string code)
    {
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);

        await client.SendAsync(frame);

        var error = await client.NextAsync();
        AssertError(error, code, JsonDocument.Parse(frame).RootElement.GetProperty("id").GetString());
        Assert.Contains("sequence", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        await AssertStillServesAsync(client);
    }

    [Fact]
    public async Task Frames_OneSequenceSentBackToBack_AnsweredInSendOrder()
    {
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);
        const int Count = 24;
        for (var i = 0; i < Count; i++)
        {
            await client.SendAsync(new Dictionary<string, object>
            {
                ["type"] = "infer",
                ["id"] = $"o{i}",
                ["model"] = "vad",
                ["inputs"] = new
                {
                    input = new { dtype = "float32", shape = new[] { 1, 1 }, data = new[] { i } },
                    sr = new { dtype = "int64", shape = Array.Empty<int>(), data = new[] { 16000 } },
                },
                ["sequence_id"] = "stream",
                ["sequence_start"] = i == 0,
                ["sequence_end"] = i == Count - 1,
            });
        }

        var answers = await client.NextAsync(Count);

        // Admitted one after another, and run one at a time on the state the one before left.
        Assert.Equal(Enumerable.Range(0, Count).Select(i => $"o{i}"), answers.Select(a => a.GetProperty("id").GetString()));
        var state = new float[2 * TestModels.StateWidth];
        for (var i = 0; i < Count; i++)
        {
            Assert.Equal("result", answers[i].GetProperty("type").GetString());
            (state, var output) = TestModels.StatefulStep(state, [i], 16000);
            BatchAxisTests.AssertClose([output], [answers[i].GetProperty("outputs").GetProperty("output").GetProperty("data")[0].GetSingle()]);
        }

        await AssertStillServesAsync(client);
    }
}
