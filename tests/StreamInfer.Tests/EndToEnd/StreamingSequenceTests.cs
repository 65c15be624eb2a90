using System.Buffers.Binary;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Grains.Models.Stateful;
using StreamInfer.Grains.Placement;
using StreamInfer.Tests.Frontend.Grpc;
using StreamInfer.Tests.Frontend.WebSockets;
using StreamInfer.Tests.Grains.Models.Onnx;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.EndToEnd;

/// <summary>
/// Stateful streams end to end, on the embedded grid with the built-in <c>vad-lite</c> it writes into its repository:
/// clients stream audio-like chunks of many sequences at once, by WebSocket (binary and JSON frames mixed), KServe HTTP
/// and gRPC, and every chunk's output equals <see cref="VadLiteReference"/> running that sequence alone, bit for bit,
/// while the other sequences share its batches. Also the sequences' misuse, a disconnect freeing their state, and idle
/// expiry (on the stateful test models, whose configs the tests choose).
/// </summary>
public sealed class StreamingSequenceTests(StreamingSequenceTests.Grid grid) : IClassFixture<StreamingSequenceTests.Grid>
{
    private const string Vad = VadLite.Name;
    private const int Chunks = 20;
    private const double TimeoutMs = 120_000;

    [Fact]
    public async Task WebSocket_ManySequencesStreamedAtOnce_EachChunkEqualsItsSequenceRunAlone()
    {
        // Three sequences checked among a hundred more streaming beside them, over four connections, every chunk sent
        // without waiting for an answer; a sequence's chunks alternate between binary and JSON frames.
        const int Checked = 3, Others = 100, Connections = 4;
        var sequences = Enumerable.Range(0, Checked + Others).ToList();
        var clients = new List<BinaryWsClient>();
        for (var c = 0; c < Connections; c++)
        {
            clients.Add(await BinaryWsClient.ConnectAsync(grid.WsUri));
        }

        try
        {
            await Task.WhenAll(clients.Select((client, c) => Task.Run(async () =>
            {
                for (var i = 0; i < Chunks; i++)
                {
                    foreach (var s in sequences.Where(s => s % Connections == c))
                    {
                        await SendChunkAsync(client, $"s{s}", s, i, binary: (s + i) % 2 == 0);
                    }
                }
            })));

            var answers = await Task.WhenAll(clients.Select((client, c) => ReceiveAsync(client, sequences.Count(s => s % Connections == c) * Chunks)));

            var batchSizes = new List<int>();
            foreach (var s in sequences)
            {
                var mine = answers[s % Connections].Where(a => a.Id.StartsWith($"s{s}-", StringComparison.Ordinal)).ToList();
                // Answered in the order sent, each the output of the sequence run alone up to that chunk.
                Assert.Equal(Enumerable.Range(0, Chunks).Select(i => $"s{s}-{i}"), mine.Select(a => a.Id));
                Assert.Equal(Reference(s), mine.Select(a => a.Output));
                batchSizes.AddRange(mine.Select(a => a.BatchSize));
            }

            // Batches held many rows: the mean over batches, each batch counted once (a request stands for 1/size of one).
            var meanBatch = batchSizes.Count / batchSizes.Sum(b => 1.0 / b);
            Assert.True(meanBatch > 1, $"mean batch size {meanBatch:F2}: the sequences did not share batches.");
            Assert.True(batchSizes.Max() <= VadLite.DefaultMaxBatchSize);
            await Eventually.UntilAsync(() => grid.HeldAsync(Vad), held => held == 0, what: "every sequence freed after its end");
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task WebSocket_OneSequenceSentBackToBack_AnsweredInOrderWithTheReferenceOutputs()
    {
        await using var client = await BinaryWsClient.ConnectAsync(grid.WsUri);
        const int Count = 40, Sequence = 500;
        for (var i = 0; i < Count; i++)
        {
            await SendChunkAsync(client, "mic", Sequence, i, binary: i % 3 != 0, count: Count);
        }

        var answers = await ReceiveAsync(client, Count);

        Assert.Equal(Enumerable.Range(0, Count).Select(i => $"mic-{i}"), answers.Select(a => a.Id));
        Assert.Equal(Reference(Sequence, Count), answers.Select(a => a.Output));
    }

    [Fact]
    public async Task WebSocket_SequenceMisuse_StructuredErrorsWhileTheConnectionKeepsServing()
    {
        await using var client = await BinaryWsClient.ConnectAsync(grid.WsUri);

        await client.SendTextAsync(ChunkFrame("m0", "never-started", 600, 0, start: false, end: false));
        AssertError(await NextAnswerAsync(client), "m0", "unknown_sequence");

        await client.SendTextAsync(ChunkFrame("m1", "a", 601, 0, start: true, end: false));
        Assert.Equal(Reference(601, 1)[0], Parse(await NextAnswerAsync(client)).Output);

        await client.SendTextAsync(ChunkFrame("m2", "a", 601, 1, start: true, end: false));
        AssertError(await NextAnswerAsync(client), "m2", "sequence_exists");

        // Stateful: every request names its sequence.
        var frame = ChunkFrame("m3", "a", 601, 1, start: false, end: false);
        frame.Remove("sequence_id");
        frame.Remove("sequence_start");
        frame.Remove("sequence_end");
        await client.SendTextAsync(frame);
        AssertError(await NextAnswerAsync(client), "m3", "invalid_input");

        var flagAlone = ChunkFrame("m4", "a", 601, 1, start: false, end: true);
        flagAlone.Remove("sequence_id");
        await client.SendTextAsync(flagAlone);
        AssertError(await NextAnswerAsync(client), "m4", "bad_request");

        // The refusals left "a" where it was: its second chunk runs on the state of its first, and ends it.
        await client.SendTextAsync(ChunkFrame("m5", "a", 601, 1, start: false, end: true));
        Assert.Equal(Reference(601, 2)[1], Parse(await NextAnswerAsync(client)).Output);

        await client.SendTextAsync(ChunkFrame("m6", "a", 601, 2, start: false, end: false));
        AssertError(await NextAnswerAsync(client), "m6", "unknown_sequence");

        await client.SendTextAsync(ChunkFrame("m7", "a", 602, 0, start: true, end: true));
        Assert.Equal(Reference(602, 1)[0], Parse(await NextAnswerAsync(client)).Output);
        await Eventually.UntilAsync(() => grid.HeldAsync(Vad), held => held == 0, what: "the ended sequences freed");
    }

    [Fact]
    public async Task WebSocket_Disconnect_FreesTheSequencesItHeld()
    {
        const string Model = "vad-free";
        var client = await BinaryWsClient.ConnectAsync(grid.WsUri);
        try
        {
            for (var s = 0; s < 5; s++)
            {
                await client.SendTextAsync(TestChunkFrame($"d{s}", Model, $"d{s}", start: true));
            }

            var answers = await ReceiveAsync(client, 5);
            Assert.All(answers, a => Assert.True(float.IsFinite(a.Output)));
            Assert.Equal(5, await grid.HeldAsync(Model));
        }
        finally
        {
            await client.DisposeAsync();
        }

        await Eventually.UntilAsync(() => grid.HeldAsync(Model), held => held == 0, what: "the disconnected client's sequences freed");
    }

    [Fact]
    public async Task WebSocket_SequenceIdlePastItsTimeout_ExpiresThenUnknownAndStartsAfresh()
    {
        const string Model = "vad-idle";
        await using var client = await BinaryWsClient.ConnectAsync(grid.WsUri);
        await client.SendTextAsync(TestChunkFrame("i0", Model, "x", start: true));
        var (state, first) = TestModels.StatefulStep(new float[2 * TestModels.StateWidth], [1, 2], VadLite.ReferenceSampleRate);
        BatchAxisTests.AssertClose([first], [Parse(await NextAnswerAsync(client)).Output]);

        await Eventually.UntilAsync(() => grid.HeldAsync(Model), held => held == 0, what: $"the sequence expired after {Grid.IdleTimeoutMs} ms idle");

        await client.SendTextAsync(TestChunkFrame("i1", Model, "x", start: false));
        // The session still knows "x" (it neither ended nor was refused): the batcher, which let it expire, refuses it.
        AssertError(await NextAnswerAsync(client), "i1", "unknown_sequence");

        // A new start begins from the initial state, not from the expired one's.
        await client.SendTextAsync(TestChunkFrame("i2", Model, "x", start: true, end: true));
        BatchAxisTests.AssertClose([first], [Parse(await NextAnswerAsync(client)).Output]);
        Assert.NotEqual(TestModels.StatefulStep(state, [1, 2], VadLite.ReferenceSampleRate).Output, first);
    }

    [Fact]
    public async Task KServeHttp_SequenceParameters_EachChunkEqualsTheReference()
    {
        const int Count = 12, Sequence = 700;
        using var http = new HttpClient { BaseAddress = grid.HttpUri, Timeout = TimeSpan.FromSeconds(60) };
        http.DefaultRequestHeaders.Add("X-Client-Id", $"kserve-{Guid.NewGuid():N}");
        var outputs = new List<float>();
        for (var i = 0; i < Count; i++)
        {
            var body = new JsonObject
            {
                ["id"] = $"k{i}",
                // Triton's integer form of the id.
                ["parameters"] = new JsonObject { ["sequence_id"] = 4711, ["sequence_start"] = i == 0, ["sequence_end"] = i == Count - 1 },
                ["inputs"] = new JsonArray(
                    new JsonObject { ["name"] = "input", ["datatype"] = "FP32", ["shape"] = new JsonArray(1, VadLite.ChunkSamples), ["data"] = JsonSerializer.SerializeToNode(VadLiteReference.Chunk(Sequence, i)) },
                    new JsonObject { ["name"] = "sr", ["datatype"] = "INT64", ["shape"] = new JsonArray(), ["data"] = new JsonArray(VadLite.ReferenceSampleRate) }),
            };
            using var response = await http.PostAsJsonAsync($"/v2/models/{Vad}/infer", body);
            var answer = await response.Content.ReadFromJsonAsync<JsonElement>();
            Assert.True(response.IsSuccessStatusCode, answer.ToString());
            var output = answer.GetProperty("outputs").EnumerateArray().Single(o => o.GetProperty("name").GetString() == "output");
            outputs.Add(Assert.Single(Flatten(output.GetProperty("data"))));
        }

        Assert.Equal(Reference(Sequence, Count), outputs);
    }

    [Fact]
    public async Task GrpcStream_SequenceSentBackToBack_EachChunkEqualsTheReferenceInOrder()
    {
        const int Count = 16, Sequence = 800;
        using var channel = GrpcTestTensors.Channel(grid.GrpcUri);
        using var call = new GRPCInferenceService.GRPCInferenceServiceClient(channel).ModelStreamInfer(deadline: DateTime.UtcNow.AddSeconds(60));
        for (var i = 0; i < Count; i++)
        {
            var request = new ModelInferRequest { ModelName = Vad, Id = $"g{i}" };
            request.Inputs.Add(GrpcTestTensors.Input("input", "FP32", 1, VadLite.ChunkSamples));
            request.Inputs.Add(GrpcTestTensors.Input("sr", "INT64"));
            request.RawInputContents.Add(GrpcTestTensors.Floats(VadLiteReference.Chunk(Sequence, i)));
            request.RawInputContents.Add(GrpcTestTensors.Longs(VadLite.ReferenceSampleRate));
            request.Parameters["sequence_id"] = new InferParameter { StringParam = "grpc-mic" };
            request.Parameters["sequence_start"] = new InferParameter { BoolParam = i == 0 };
            request.Parameters["sequence_end"] = new InferParameter { BoolParam = i == Count - 1 };
            await call.RequestStream.WriteAsync(request);
        }

        await call.RequestStream.CompleteAsync();
        var answers = new List<ModelStreamInferResponse>();
        await foreach (var answer in call.ResponseStream.ReadAllAsync())
        {
            Assert.True(string.IsNullOrEmpty(answer.ErrorMessage), answer.ErrorMessage);
            answers.Add(answer);
        }

        Assert.Equal(Enumerable.Range(0, Count).Select(i => $"g{i}"), answers.Select(a => a.InferResponse.Id));
        Assert.Equal(Reference(Sequence, Count), answers.Select(a => (float)(double)Assert.Single(GrpcTestTensors.Values(a.InferResponse, "output"))));
    }

    /// <summary>The outputs of sequence <paramref name="sequence"/>'s chunks run alone, from a zero state.</summary>
    private static float[] Reference(int sequence, int count = Chunks)
        => VadLiteReference.Run(Enumerable.Range(0, count).Select(i => VadLiteReference.Chunk(sequence, i)));

    /// <summary>Chunk <paramref name="index"/> of sequence <paramref name="sequence"/> as request <c>{id}-{index}</c>:
    /// a binary frame (the samples and the rate in the payload) or a JSON one.</summary>
    private static Task SendChunkAsync(BinaryWsClient client, string id, int sequence, int index, bool binary, int count = Chunks)
    {
        var frame = ChunkFrame($"{id}-{index}", id, sequence, index, start: index == 0, end: index == count - 1);
        if (!binary)
        {
            return client.SendTextAsync(frame);
        }

        var samples = MemoryMarshal.AsBytes(VadLiteReference.Chunk(sequence, index).AsSpan()).ToArray();
        var rate = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(rate, VadLite.ReferenceSampleRate);
        frame["inputs"] = new Dictionary<string, object>
        {
            ["input"] = new { dtype = "float32", shape = new[] { 1, VadLite.ChunkSamples }, bytes = new[] { 0, samples.Length } },
            ["sr"] = new { dtype = "int64", shape = Array.Empty<int>(), bytes = new[] { samples.Length, rate.Length } },
        };
        return client.SendBinaryAsync(BinaryFrames.Build(frame, samples, rate));
    }

    private static Dictionary<string, object> ChunkFrame(string id, string sequenceId, int sequence, int index, bool start, bool end) => new()
    {
        ["type"] = "infer",
        ["id"] = id,
        ["model"] = Vad,
        ["timeout_ms"] = TimeoutMs,
        ["sequence_id"] = sequenceId,
        ["sequence_start"] = start,
        ["sequence_end"] = end,
        ["inputs"] = new Dictionary<string, object>
        {
            ["input"] = new { dtype = "float32", shape = new[] { 1, VadLite.ChunkSamples }, data = VadLiteReference.Chunk(sequence, index) },
            ["sr"] = new { dtype = "int64", shape = Array.Empty<int>(), data = new[] { VadLite.ReferenceSampleRate } },
        },
    };

    /// <summary>A chunk of the stateful test model's (<see cref="TestModels.WriteStateful"/>): samples 1 and 2.</summary>
    private static Dictionary<string, object> TestChunkFrame(string id, string model, string sequenceId, bool start, bool end = false) => new()
    {
        ["type"] = "infer",
        ["id"] = id,
        ["model"] = model,
        ["sequence_id"] = sequenceId,
        ["sequence_start"] = start,
        ["sequence_end"] = end,
        ["inputs"] = new Dictionary<string, object>
        {
            ["input"] = new { dtype = "float32", shape = new[] { 1, 2 }, data = new[] { 1f, 2f } },
            ["sr"] = new { dtype = "int64", shape = Array.Empty<int>(), data = new[] { VadLite.ReferenceSampleRate } },
        },
    };

    private sealed record Answer(string Id, float Output, int BatchSize);

    private static async Task<List<Answer>> ReceiveAsync(BinaryWsClient client, int count)
    {
        var answers = new List<Answer>(count);
        while (answers.Count < count)
        {
            answers.Add(Parse(await NextAnswerAsync(client, TimeSpan.FromSeconds(60))));
        }

        return answers;
    }

    /// <summary>
    /// The next result or error: vad-lite's window raises <c>event</c> frames before some results (their order and
    /// content are tested in SequenceWindowFrameTests), which these tests pass over.
    /// </summary>
    private static async Task<WsMessage> NextAnswerAsync(BinaryWsClient client, TimeSpan? timeout = null)
    {
        while (true)
        {
            var message = await client.NextAsync(timeout);
            if (message.Type != WebSocketMessageType.Text || message.Json.GetProperty("type").GetString() != "event")
            {
                return message;
            }
        }
    }

    /// <summary>A result, binary or JSON: its id, its one <c>output</c> value and its batch's size.</summary>
    private static Answer Parse(WsMessage message)
    {
        if (message.Type == WebSocketMessageType.Binary)
        {
            var header = message.Header;
            return new(header.GetProperty("id").GetString()!, MemoryMarshal.Cast<byte, float>(message.Output("output")).ToArray().Single(), BatchSize(header));
        }

        var json = message.Json;
        Assert.True(json.GetProperty("type").GetString() == "result", json.ToString());
        var output = Flatten(json.GetProperty("outputs").GetProperty("output").GetProperty("data"));
        return new(json.GetProperty("id").GetString()!, Assert.Single(output), BatchSize(json));
    }

    private static int BatchSize(JsonElement result) => result.GetProperty("timing").GetProperty("batch_size").GetInt32();

    private static List<float> Flatten(JsonElement data)
    {
        if (data.ValueKind != JsonValueKind.Array)
        {
            return [data.GetSingle()];
        }

        return [.. data.EnumerateArray().SelectMany(Flatten)];
    }

    private static void AssertError(WsMessage message, string id, string code)
    {
        var json = message.Json;
        Assert.True(json.GetProperty("type").GetString() == "error", json.ToString());
        Assert.Equal((id, code), (json.GetProperty("id").GetString(), json.GetProperty("code").GetString()));
        Assert.False(string.IsNullOrEmpty(json.GetProperty("message").GetString()));
    }

    /// <summary>
    /// The embedded grid these tests share: the built-in <c>vad-lite</c> (written into the repository at start, as for
    /// any user), the stateful test model as <c>vad-free</c> and as <c>vad-idle</c> (which expires a sequence after
    /// <see cref="IdleTimeoutMs"/> idle), gRPC on, and a backlog that holds every chunk sent at once.
    /// </summary>
    public sealed class Grid : IAsyncLifetime
    {
        public const int IdleTimeoutMs = 300;

        private readonly string _repository = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        private WebApplication _app = null!;

        public Uri HttpUri { get; private set; } = null!;

        public Uri WsUri => new UriBuilder(HttpUri) { Scheme = "ws", Path = "/ws" }.Uri;

        public Uri GrpcUri { get; } = new($"http://127.0.0.1:{Ports.FreeText()}");

        /// <summary>The sequences the batcher of <paramref name="model"/> holds.</summary>
        public async Task<int> HeldAsync(string model)
        {
            var silo = SiloNames.ForKey(_app.Services.GetRequiredService<ILocalSiloDetails>().Name);
            var batcher = _app.Services.GetRequiredService<IClusterClient>().GetGrain<IBatcherGrain>(new BatcherKey(model, silo, "cpu0").ToString());
            return (await batcher.GetStatusAsync()).Held;
        }

        public async Task InitializeAsync()
        {
            Directory.CreateDirectory(_repository);
            TestModels.WriteStateful(_repository, "vad-free");
            TestModels.WriteStateful(_repository, "vad-idle", sequenceConfig: $", \"idle_timeout_ms\": {IdleTimeoutMs}");
            (_app, HttpUri) = await FrontendFixture.StartGridAsync(FrontendFixture.IsolatedSettings(extra:
            [
                ("StreamInfer:Repository:Path", _repository),
                ("StreamInfer:Repository:BuiltInVadLite", "true"),
                ("StreamInfer:Frontend:GrpcUrl", GrpcUri.ToString()),
                ("StreamInfer:Session:RatePerSecond", "1000000"),
                ("StreamInfer:Session:Burst", "1000000"),
                ("StreamInfer:Session:BacklogCapacity", "4096"),
            ]));
        }

        public async Task DisposeAsync()
        {
            await _app.DisposeAsync();
            Directory.Delete(_repository, recursive: true);
        }
    }
}
