using System.Diagnostics;
using System.Text;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.EndToEnd;

/// <summary>
/// The shipped executable with its shipped appsettings.json, as a separate process: the issue's "done when" check
/// (100 WebSocket clients, 1,000 requests in all, 1,000 matched answers). Slow: CI runs it, the default run does not.
/// </summary>
[Trait("Category", "Slow")]
public sealed class EmbeddedDefaultProcessTests
{
    [Fact]
    public async Task EmbeddedDefault_HundredClientsThousandRequests_AllAnsweredAndMatched()
    {
        var port = Ports.Free();
        await using var grid = await GridProcess.StartAsync(port, workingDirectory: NewWorkingFolder());
        var uri = new Uri($"ws://127.0.0.1:{port}/ws");

        var answered = 0;
        async Task RunClientAsync(int c)
        {
            await using var client = await WsTestClient.ConnectAsync(uri);
            for (var i = 0; i < 10; i++)
            {
                await client.SendInferAsync($"{c}-{i}", inputs: new { x = new { dtype = "float32", shape = new[] { 2 }, data = new[] { c, i } } });
            }

            var frames = await client.NextAsync(10, TimeSpan.FromSeconds(60));
            var ids = new HashSet<string>();
            foreach (var frame in frames)
            {
                Assert.Equal("result", frame.GetProperty("type").GetString());
                var data = frame.GetProperty("outputs").GetProperty("x").GetProperty("data").EnumerateArray().Select(e => (int)e.GetDouble()).ToArray();
                Assert.Equal(c, data[0]);
                Assert.Equal($"{c}-{data[1]}", frame.GetProperty("id").GetString());
                Assert.True(ids.Add(frame.GetProperty("id").GetString()!));
            }

            Interlocked.Add(ref answered, ids.Count);
        }

        await Task.WhenAll(Enumerable.Range(0, 100).Select(RunClientAsync));

        Assert.Equal(1000, answered);
    }

    /// <summary>
    /// A fresh start in an empty folder, up to ready: nothing at warning level or above, since a user cannot act on it
    /// (Orleans' watchdog used to report a stall as long as the machine's uptime on about every other start).
    /// </summary>
    [Fact]
    public async Task EmbeddedDefault_FreshStartUntilReady_LogsNoWarning()
    {
        var port = Ports.Free();
        await using var grid = await GridProcess.StartAsync(port, workingDirectory: NewWorkingFolder());
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        await Eventually.UntilAsync(() => http.GetAsync(new Uri("/readyz", UriKind.Relative)), r => r.IsSuccessStatusCode, TimeSpan.FromSeconds(60), "the grid is ready");

        var output = grid.Output;
        Assert.Contains("Application started", output, StringComparison.Ordinal);
        Assert.DoesNotContain("warn:", output, StringComparison.Ordinal);
        Assert.DoesNotContain("fail:", output, StringComparison.Ordinal);
        Assert.DoesNotContain("crit:", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EmbeddedDefault_ModelsDroppedIntoWorkingFolder_ServedOverKServeAndWebSocketBrokenOneReported()
    {
        // A user's working folder with ./models: two good models and one whose file is not ONNX.
        var folder = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        var models = Path.Combine(folder, "models");
        TestModels.WriteSequence(models);
        TestModels.WriteMulti(models);
        TestModels.WriteLookup(models, "broken");
        await File.WriteAllTextAsync(Path.Combine(models, "broken", "1", "model.onnx"), "not a model");

        var port = Ports.Free();
        await using var grid = await GridProcess.StartAsync(port, workingDirectory: folder);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        await Eventually.UntilAsync(() => http.GetAsync(new Uri("/v2/health/ready", UriKind.Relative)), r => r.IsSuccessStatusCode, TimeSpan.FromSeconds(60), "the repository loads");

        using var broken = await http.GetAsync(new Uri("/v2/models/broken", UriKind.Relative));
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, broken.StatusCode);
        Assert.Contains("broken/1/model.onnx", await broken.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Contains("broken/1/model.onnx", grid.Output, StringComparison.Ordinal);

        var body = """{"id":"k1","inputs":[{"name":"tokens","datatype":"FP32","shape":[1,2,4],"data":[1,0,0,0, 0,1,0,0]}]}""";
        using var infer = await http.PostAsync(new Uri("/v2/models/seq/infer", UriKind.Relative), new StringContent(body, Encoding.UTF8, "application/json"));
        var answer = await infer.Content.ReadAsStringAsync();
        Assert.True(infer.IsSuccessStatusCode, answer);
        using var json = System.Text.Json.JsonDocument.Parse(answer);
        var outputs = json.RootElement.GetProperty("outputs").EnumerateArray().ToDictionary(o => o.GetProperty("name").GetString()!);
        Assert.Equal([1, 2, 3], outputs["hidden"].GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()));
        Assert.Equal("1", json.RootElement.GetProperty("model_version").GetString());

        await using var ws = await WsTestClient.ConnectAsync(new Uri($"ws://127.0.0.1:{port}/ws"));
        await ws.SendInferAsync("w1", "seq", inputs: new { tokens = new { dtype = "float32", shape = new[] { 2, 4 }, data = new[] { 1, 0, 0, 0, 0, 1, 0, 0 } } });
        var frame = await ws.NextAsync(TimeSpan.FromSeconds(30));
        Assert.Equal("result", frame.GetProperty("type").GetString());
        Assert.Equal([2, 3], frame.GetProperty("outputs").GetProperty("hidden").GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()));
        // The same request over KServe (with its batch axis) and over the socket (without) give the same numbers.
        Assert.Equal(
            outputs["pooled"].GetProperty("data").EnumerateArray().Select(d => d.GetDouble()),
            frame.GetProperty("outputs").GetProperty("pooled").GetProperty("data").EnumerateArray().Select(d => d.GetDouble()));
    }


    /// <summary>
    /// The issue's "done when": started in an empty folder, the grid writes tiny-lm into ./models and 64 WebSocket
    /// clients stream from it at once, every stream complete (its tokens counted in <c>usage</c>), in order, and ended
    /// by <c>done</c>.
    /// </summary>
    [Fact]
    public async Task EmbeddedDefault_SixtyFourClientsStreamTinyLm_EveryStreamCompleteAndInOrder()
    {
        var folder = NewWorkingFolder();
        var port = Ports.Free();
        await using var grid = await GridProcess.StartAsync(port, workingDirectory: folder);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        await Eventually.UntilAsync(() => http.GetAsync(new Uri("/v2/health/ready", UriKind.Relative)), r => r.IsSuccessStatusCode, TimeSpan.FromSeconds(60), "tiny-lm loads");
        Assert.True(File.Exists(Path.Combine(folder, "models", "tiny-lm", "1", "model.onnx")));

        async Task<int> StreamAsync(int c)
        {
            await using var client = await WsTestClient.ConnectAsync(new Uri($"ws://127.0.0.1:{port}/ws"));
            await client.SendAsync(new { type = "infer", id = $"s{c}", model = "tiny-lm", prompt = $"Client {c} says", max_tokens = 32, temperature = 0.8, seed = c });
            // Sampling may end a stream early with the end-of-text token ("stop"); every other ends at max_tokens.
            var frames = new List<System.Text.Json.JsonElement>();
            while (frames.Count == 0 || frames[^1].GetProperty("type").GetString() == "token")
            {
                frames.Add(await client.NextAsync(TimeSpan.FromSeconds(60)));
            }

            var done = frames[^1];
            Assert.Equal("done", done.GetProperty("type").GetString());
            Assert.Equal(Enumerable.Range(0, frames.Count - 1), frames[..^1].Select(f => f.GetProperty("index").GetInt32()));
            Assert.Equal(frames.Count - 1, done.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            Assert.Equal(frames.Count - 1 == 32 ? "length" : "stop", done.GetProperty("finish_reason").GetString());
            return done.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        }

        var tokens = await Task.WhenAll(Enumerable.Range(0, 64).Select(StreamAsync));

        Assert.All(tokens, t => Assert.InRange(t, 1, 32));
        Assert.Contains(tokens, t => t == 32);
    }

    /// <summary>The official OpenAI Node SDK, pointed at the grid's /v1, streams tiny-lm (needs node and tests/clients' npm install; .ci/run does both).</summary>
    [Fact]
    public async Task EmbeddedDefault_OfficialOpenAIClient_StreamsAndCompletes()
    {
        var clients = Path.Combine(FindRepositoryFolder(), "tests", "clients");
        Assert.True(Directory.Exists(Path.Combine(clients, "node_modules", "openai")), "run 'npm install' in tests/clients first (.ci/run does)");
        var port = Ports.Free();
        await using var grid = await GridProcess.StartAsync(port, workingDirectory: NewWorkingFolder());
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        await Eventually.UntilAsync(() => http.GetAsync(new Uri("/v2/health/ready", UriKind.Relative)), r => r.IsSuccessStatusCode, TimeSpan.FromSeconds(60), "tiny-lm loads");

        var info = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = clients };
        info.ArgumentList.Add("openai-stream.mjs");
        info.ArgumentList.Add($"http://127.0.0.1:{port}/v1");
        using var node = Process.Start(info)!;
        var stdout = node.StandardOutput.ReadToEndAsync();
        var stderr = node.StandardError.ReadToEndAsync();
        await node.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(node.ExitCode == 0, await stderr);

        using var result = System.Text.Json.JsonDocument.Parse(await stdout);
        var root = result.RootElement;
        Assert.Equal("length", root.GetProperty("finish").GetString());
        Assert.True(root.GetProperty("chunks").GetInt32() >= 3);
        Assert.Equal(5, root.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(12, root.GetProperty("streamUsage").GetProperty("completion_tokens").GetInt32());
        // The same chat, not streamed, over plain HTTP: the SDK's stream carried exactly its text.
        using var plain = await http.PostAsync(
            new Uri("/v1/chat/completions", UriKind.Relative),
            new StringContent("""{"model":"tiny-lm","messages":[{"role":"user","content":"Hi"}],"max_tokens":12,"temperature":0}""", Encoding.UTF8, "application/json"));
        using var plainJson = System.Text.Json.JsonDocument.Parse(await plain.Content.ReadAsStringAsync());
        Assert.Equal(plainJson.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(), root.GetProperty("text").GetString());
    }

    /// <summary>
    /// A KServe v2 gRPC client from another gRPC stack (grpc-js in Node, its client generated at run time from the
    /// grid's .proto by proto-loader; needs node and tests/clients' npm install, as .ci/run does): ModelInfer on echo with
    /// raw contents, and ModelStreamInfer streaming tiny-lm's tokens then a final answer, as Triton's decoupled mode does.
    /// </summary>
    [Fact]
    public async Task EmbeddedDefault_GrpcJsClient_RawInferAndStreamedTokens()
    {
        var clients = Path.Combine(FindRepositoryFolder(), "tests", "clients");
        Assert.True(Directory.Exists(Path.Combine(clients, "node_modules", "@grpc", "grpc-js")), "run 'npm install' in tests/clients first (.ci/run does)");
        var port = Ports.Free();
        var grpcPort = Ports.Free();
        await using var grid = await GridProcess.StartAsync(port, workingDirectory: NewWorkingFolder(), grpcPort: grpcPort);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        await Eventually.UntilAsync(() => http.GetAsync(new Uri("/v2/health/ready", UriKind.Relative)), r => r.IsSuccessStatusCode, TimeSpan.FromSeconds(60), "tiny-lm loads");

        var info = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = clients };
        info.ArgumentList.Add("kserve-grpc.mjs");
        info.ArgumentList.Add($"127.0.0.1:{grpcPort}");
        info.ArgumentList.Add(Path.Combine(FindRepositoryFolder(), "Frontend", "Grpc", "Protos", "inference.proto"));
        using var node = Process.Start(info)!;
        var stdout = node.StandardOutput.ReadToEndAsync();
        var stderr = node.StandardError.ReadToEndAsync();
        await node.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(node.ExitCode == 0, await stderr);

        using var result = System.Text.Json.JsonDocument.Parse(await stdout);
        var root = result.RootElement;
        Assert.True(root.GetProperty("live").GetBoolean());
        Assert.Equal("node-1", root.GetProperty("id").GetString());
        Assert.Equal([2L, 2L], root.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal([1.5, -2, 3.25, 4], root.GetProperty("values").EnumerateArray().Select(v => v.GetDouble()));
        Assert.Equal(5, root.GetProperty("tokens").GetInt32());
        Assert.Equal("length", root.GetProperty("final").GetProperty("finish").GetString());
    }

    /// <summary>
    /// The dashboard in a real browser (Debian's chromium, headless; .ci/run installs it): the page's script runs,
    /// polls the grid and renders the silo and the session grains' calls made just before.
    /// </summary>
    [Fact]
    public async Task EmbeddedDefault_DashboardInChromium_RendersTheSiloAndLiveGrainCalls()
    {
        var port = Ports.Free();
        await using var grid = await GridProcess.StartAsync(port, workingDirectory: NewWorkingFolder());
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };

        // A first read switches the dashboard's grain-call profiler on; then some traffic for it to see.
        using (await http.GetAsync(new Uri("/dashboard/DashboardCounters", UriKind.Relative)))
        {
        }

        for (var i = 0; i < 40; i++)
        {
            using var answer = await http.PostAsync(
                new Uri("/predict", UriKind.Relative),
                new StringContent("""{"model":"echo","inputs":{"x":{"dtype":"float32","shape":[1],"data":[1]}}}""", Encoding.UTF8, "application/json"));
            Assert.True(answer.IsSuccessStatusCode);
        }

        var info = new ProcessStartInfo("chromium") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=5000", "--dump-dom", $"http://127.0.0.1:{port}/dashboard/" })
        {
            info.ArgumentList.Add(arg);
        }

        using var browser = Process.Start(info) ?? throw new InvalidOperationException("chromium did not start (apt-get install chromium; .ci/run does)");
        var dom = browser.StandardOutput.ReadToEndAsync();
        _ = browser.StandardError.ReadToEndAsync();
        await browser.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        var text = System.Text.RegularExpressions.Regex.Replace(System.Text.RegularExpressions.Regex.Replace(await dom, "<[^>]*>", " "), @"\s+", " ");

        // Rendered by the page's script from the grid's live counters, not present in the served HTML.
        Assert.Contains("Active Silos 1", text, StringComparison.Ordinal);
        Assert.Contains("SubmitAsync ClientSessionGrain", text, StringComparison.Ordinal);
    }

    private static string NewWorkingFolder()
    {
        var folder = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        return folder;
    }

    private static string FindRepositoryFolder()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "StreamInfer.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("the repository folder (with StreamInfer.sln) was not found above the test binaries.");
    }

    /// <summary>The Frontend executable started as its own process, with the repository's appsettings.json.</summary>
    private sealed class GridProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();
        private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private GridProcess(Process process) => _process = process;

        /// <summary>Starts the shipped grid on <paramref name="port"/>, its gRPC service on <paramref name="grpcPort"/> (a free
        /// port when null: the shipped 8001 is one for the whole machine).</summary>
        public static async Task<GridProcess> StartAsync(int port, string? workingDirectory = null, int? grpcPort = null)
        {
            var frontendDll = Path.Combine(AppContext.BaseDirectory, "StreamInfer.Frontend.dll");
            var contentRoot = FindFrontendFolder();
            var info = new ProcessStartInfo("dotnet")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = workingDirectory ?? contentRoot,
            };
            foreach (var arg in new[]
            {
                frontendDll,
                "--contentRoot", contentRoot,
                "--urls", $"http://127.0.0.1:{port}",
                $"--StreamInfer:Orleans:SiloPort={Ports.Free()}",
                $"--StreamInfer:Orleans:GatewayPort={Ports.Free()}",
            })
            {
                info.ArgumentList.Add(arg);
            }

            info.ArgumentList.Add($"--StreamInfer:Frontend:GrpcUrl=http://127.0.0.1:{grpcPort ?? Ports.Free()}");

            var grid = new GridProcess(Process.Start(info)!);
            grid._process.OutputDataReceived += (_, e) => grid.Append(e.Data);
            grid._process.ErrorDataReceived += (_, e) => grid.Append(e.Data);
            grid._process.BeginOutputReadLine();
            grid._process.BeginErrorReadLine();

            // Kestrel logs "Application started" once the silo and the endpoints are up: await that line, not a poll.
            var exited = grid._process.WaitForExitAsync();
            var started = await Task.WhenAny(grid._started.Task, exited).WaitAsync(TimeSpan.FromSeconds(90));
            if (started == exited)
            {
                throw new InvalidOperationException($"the grid exited with {grid._process.ExitCode}:\n{grid.Output}");
            }

            using var http = new HttpClient();
            Assert.Equal("ok", await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/healthz")));
            return grid;
        }

        public string Output
        {
            get
            {
                lock (_output)
                {
                    return _output.ToString();
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            }

            _process.Dispose();
        }

        private void Append(string? line)
        {
            if (line is not null)
            {
                if (line.Contains("Application started", StringComparison.Ordinal))
                {
                    _started.TrySetResult();
                }

                lock (_output)
                {
                    _output.AppendLine(line);
                }
            }
        }

        private static string FindFrontendFolder()
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "Frontend", "appsettings.json");
                if (File.Exists(candidate))
                {
                    return Path.GetDirectoryName(candidate)!;
                }
            }

            throw new DirectoryNotFoundException("Frontend/appsettings.json not found above the test binaries.");
        }
    }
}
