using StreamInfer.Grains.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Grains.Placement;
using StreamInfer.Tests.Grains.Models.Decoding;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>
/// The real embedded default — Kestrel on a loopback port with a co-hosted silo — configured with small limits and a
/// few test models. Tests talk to it with <see cref="System.Net.WebSockets.ClientWebSocket"/> and <see cref="HttpClient"/>.
/// </summary>
public sealed class FrontendFixture : IAsyncLifetime
{
    public const int MaxFrameBytes = 64 * 1024;
    public const int Backlog = 100;
    public const int SendQueueCapacity = 256;
    public const int MaxBinaryBytes = 1 << 20;
    public const int SendQueueBytes = 1 << 20;
    private const string GrpcUrlKey = "StreamInfer:Frontend:GrpcUrl";

    public WebApplication App { get; private set; } = null!;

    public Uri HttpUri { get; private set; } = null!;

    public Uri WsUri { get; private set; } = null!;

    /// <summary>Where the KServe v2 gRPC service listens (h2c).</summary>
    public Uri GrpcUri { get; private set; } = null!;

    public HttpClient Http { get; private set; } = null!;

    public IClusterClient Client => App.Services.GetRequiredService<IClusterClient>();

    /// <summary>The session ids of the WebSocket clients connected right now.</summary>
    internal IReadOnlyCollection<string> ConnectedClients => App.Services.GetRequiredService<FrontendDrain>().ClientIds;

    /// <summary>The session id of the one WebSocket client that connected since <paramref name="before"/> was taken.</summary>
    internal async Task<string> NewClientIdAsync(IReadOnlySet<string> before)
        => (await Eventually.UntilAsync(
            () => Task.FromResult(ConnectedClients.Except(before).SingleOrDefault()),
            id => id is not null,
            what: "the connection registers"))!;

    public IBatcherGrain Batcher(string model)
    {
        var silo = SiloNames.ForKey(App.Services.GetRequiredService<ILocalSiloDetails>().Name);
        return Client.GetGrain<IBatcherGrain>(new BatcherKey(model, silo, "cpu0").ToString());
    }

    /// <summary>
    /// The model repository the app serves: the generated <c>seq</c>, <c>multi</c> and <c>lookup</c> models, and
    /// <c>seq-batched</c> (<c>seq</c> waiting up to 50 ms for batch-mates, so concurrent requests share a batch), the
    /// built-in <c>tiny-lm</c>, <c>tiny-lm-1</c> (tiny-lm decoding one sequence at a time), <c>tiny-kv</c> (1 MiB of cache),
    /// the rollout models <c>swap-*</c> and <c>tiny-swap</c> (see <see cref="TestModels.WriteScale"/>),
    /// <c>tiny-merged</c> (tiny-lm with
    /// a <c>use_cache_branch</c> input), and <c>tiny-bpe</c> (tiny-lm's
    /// architecture with a byte-level BPE <c>tokenizer.json</c>).
    /// </summary>
    public string Repository { get; } = NewRepository();

    public async Task InitializeAsync()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Urls"] = "http://127.0.0.1:0",
            ["Logging:LogLevel:Default"] = "Warning",
            ["StreamInfer:Orleans:SiloPort"] = Ports.FreeText(),
            ["StreamInfer:Orleans:GatewayPort"] = Ports.FreeText(),
            [GrpcUrlKey] = $"http://127.0.0.1:{Ports.Free()}",
            ["StreamInfer:Frontend:MaxFrameBytes"] = MaxFrameBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["StreamInfer:Frontend:SendQueueCapacity"] = SendQueueCapacity.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["StreamInfer:Frontend:MaxBinaryBytes"] = MaxBinaryBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["StreamInfer:Frontend:SendQueueBytes"] = SendQueueBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
            // Tests name their HTTP and gRPC sessions with X-Client-Id, which only a trusted proxy's calls may do.
            ["StreamInfer:Auth:TrustedProxies:0"] = "127.0.0.1",
            ["StreamInfer:Session:RatePerSecond"] = "1000000",
            ["StreamInfer:Session:Burst"] = "1000000",
            ["StreamInfer:Session:BacklogCapacity"] = Backlog.ToString(System.Globalization.CultureInfo.InvariantCulture),
            // Room for every request of the 100-client test queued at once.
            ["StreamInfer:Models:echo:QueueCapacity"] = "10000",
            // The binary tests' large echoes: their batch times stay out of echo's admission estimates.
            ["StreamInfer:Models:echo-bulk:QueueCapacity"] = "1000",
            ["StreamInfer:Models:hold:MaxBatchSize"] = "1000",
            ["StreamInfer:Models:hold:MaxWait"] = "00:00:10",
            // MetricsTests' own model: batches of exactly four.
            ["StreamInfer:Models:metered:MaxBatchSize"] = "4",
            ["StreamInfer:Models:metered:MaxWait"] = "00:00:10",
            ["StreamInfer:Models:slow:MaxBatchSize"] = "1",
            ["StreamInfer:Models:slow:FixedDelay"] = "00:00:00.500",
            ["StreamInfer:Models:slow-http:MaxBatchSize"] = "1",
            ["StreamInfer:Models:slow-http:FixedDelay"] = "00:00:00.500",
            ["StreamInfer:Models:slow-grpc:MaxBatchSize"] = "1",
            // Long enough that an echo sent after it on one stream finishes first even on a loaded machine.
            ["StreamInfer:Models:slow-grpc:FixedDelay"] = "00:00:01.500",
            ["StreamInfer:Models:slow-admit:MaxBatchSize"] = "1",
            ["StreamInfer:Models:slow-admit:FixedDelay"] = "00:00:00.300",
            ["StreamInfer:Repository:Path"] = Repository,
            ["StreamInfer:Models:typed:Inputs:x:DType"] = "float32",
            ["StreamInfer:Models:typed:Inputs:x:Shape:0"] = "2",
            ["StreamInfer:Models:typed:Inputs:x:Shape:1"] = "2",
        };
        (App, HttpUri) = await StartGridAsync(settings);
        WsUri = new UriBuilder(HttpUri) { Scheme = "ws", Path = "/ws" }.Uri;
        GrpcUri = new Uri(settings[GrpcUrlKey]!);
        Http = new HttpClient { BaseAddress = HttpUri, Timeout = TimeSpan.FromSeconds(30) };
    }

    /// <summary>
    /// Settings for a grid of a test's own: any free ports, warnings only, an empty repository of its own (no built-in
    /// tiny-lm unless <paramref name="tinyLm"/>, no vad-lite), plus <paramref name="extra"/>.
    /// </summary>
    public static Dictionary<string, string?> IsolatedSettings(bool tinyLm = false, params (string Key, string? Value)[] extra)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Urls"] = "http://127.0.0.1:0",
            ["Logging:LogLevel:Default"] = "Warning",
            ["StreamInfer:Orleans:SiloPort"] = Ports.FreeText(),
            ["StreamInfer:Orleans:GatewayPort"] = Ports.FreeText(),
            ["StreamInfer:Repository:Path"] = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N")),
            ["StreamInfer:Repository:BuiltInTinyLm"] = tinyLm ? "true" : "false",
            ["StreamInfer:Repository:BuiltInVadLite"] = "false",
            [GrpcUrlKey] = string.Empty,
        };
        foreach (var (key, value) in extra)
        {
            settings[key] = value;
        }

        return settings;
    }

    /// <summary>
    /// Starts the embedded default in this process with <paramref name="settings"/> over its shipped configuration, and
    /// waits until its repository has loaded; returns the app and its HTTP address. <paramref name="configure"/> runs before the
    /// grid adds its own services (a test clock registered there wins).
    /// </summary>
    public static async Task<(WebApplication App, Uri Http)> StartGridAsync(Dictionary<string, string?> settings, Action<WebApplicationBuilder>? configure = null)
    {
        // The shipped gRPC port is one for the whole machine: a grid that does not ask for gRPC serves none.
        settings.TryAdd(GrpcUrlKey, string.Empty);
        var app = StreamInferApp.Create([], b =>
        {
            b.Configuration.AddInMemoryCollection(settings);
            configure?.Invoke(b);
        });
        await app.StartAsync();
        await app.Services.GetRequiredService<ModelCatalog>().Loaded.WaitAsync(TimeSpan.FromSeconds(60));
        var grpc = settings[GrpcUrlKey] is { Length: > 0 } url ? new Uri(url) : null;
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First(a => new Uri(a).Port != grpc?.Port);
        return (app, new Uri(address));
    }

    private static string NewRepository()
    {
        var root = TestModels.NewRepository();
        TestModels.WriteSequence(root, "seq-batched", extraConfig: ", \"max_wait_ms\": 50");
        // tiny-lm itself is written by the catalog at start; this copy decodes one sequence at a time.
        StreamInfer.Grains.Models.Decoding.TinyLm.Write(Path.Combine(root, "tiny-lm-1"), new StreamInfer.Grains.Models.Decoding.TinyLmOptions { MaxBatchSize = 1 });
        // tiny-lm with 1 MiB of key/value cache: 256 tokens of its 4 KiB each, shared by every running sequence.
        var kv = Path.Combine(root, "tiny-kv");
        StreamInfer.Grains.Models.Decoding.TinyLm.Write(kv);
        File.WriteAllText(Path.Combine(kv, "config.json"), File.ReadAllText(Path.Combine(kv, "config.json")).Replace("\"kind\"", "\"kv_cache_mb\":1,\"kind\"", StringComparison.Ordinal));
        // Rollout models: version k multiplies by k; "swap-bad" has a corrupt version 3 and an incompatible version 4.
        foreach (var name in new[] { "swap-load", "swap-back", "swap-race", "swap-bad" })
        {
            TestModels.WriteScale(root, name, "1", 1f);
            TestModels.WriteScale(root, name, "2", 2f);
        }

        Directory.CreateDirectory(Path.Combine(root, "swap-bad", "3"));
        File.WriteAllText(Path.Combine(root, "swap-bad", "3", "model.onnx"), "not a model");
        TestModels.WriteScale(root, "swap-bad", "4", 4f, input: "z");
        // Reload models: versions not pinned, so a new version folder is what the scan picks.
        foreach (var name in new[] { "reload-ver", "reload-sig", "reload-gone" })
        {
            TestModels.WriteScale(root, name, "1", 1f);
            File.WriteAllText(Path.Combine(root, name, "config.json"), """{ "kind": "tensor", "max_batch_size": 8 }""");
        }

        // A decoder whose version 2 has other weights (another seed), pinned to version 1.
        var tinySwap = Path.Combine(root, "tiny-swap");
        StreamInfer.Grains.Models.Decoding.TinyLm.Write(tinySwap);
        StreamInfer.Grains.Models.Decoding.TinyLm.Write(Path.Combine(root, "tiny-swap-v2"), new StreamInfer.Grains.Models.Decoding.TinyLmOptions { Seed = 2 });
        Directory.Move(Path.Combine(root, "tiny-swap-v2", "1"), Path.Combine(tinySwap, "2"));
        Directory.Delete(Path.Combine(root, "tiny-swap-v2"), recursive: true);
        File.WriteAllText(Path.Combine(tinySwap, "config.json"), File.ReadAllText(Path.Combine(tinySwap, "config.json")).Replace("\"kind\"", "\"version\":\"1\",\"kind\"", StringComparison.Ordinal));
        // tiny-lm with Optimum's merged-decoder switch input, use_cache_branch.
        StreamInfer.Grains.Models.Decoding.TinyLm.Write(Path.Combine(root, "tiny-merged"), new StreamInfer.Grains.Models.Decoding.TinyLmOptions { UseCacheBranch = true });
        // tiny-lm's architecture with a byte-level BPE tokenizer.json beside it: the path a real GPT-2 export takes.
        var bpe = Path.Combine(root, "tiny-bpe");
        StreamInfer.Grains.Models.Decoding.TinyLm.Write(bpe, new StreamInfer.Grains.Models.Decoding.TinyLmOptions { Vocabulary = TinyBpeFiles.EndOfText + 1, EndOfTextId = TinyBpeFiles.EndOfText, Tokenizer = "tokenizer.json" });
        using (var files = new TinyBpeFiles())
        {
            File.Copy(Path.Combine(files.WriteTokenizerJson(), "tokenizer.json"), Path.Combine(bpe, "tokenizer.json"));
        }
        return root;
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }

}

[CollectionDefinition(Name)]
public sealed class FrontendCollection : ICollectionFixture<FrontendFixture>
{
    public const string Name = "frontend";
}
