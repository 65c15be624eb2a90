using System.Diagnostics;
using System.Text;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.EndToEnd;

/// <summary>
/// The shipped executable with its shipped appsettings.json, as a separate process: the "done when" check
/// (100 WebSocket clients, 1,000 requests in all, 1,000 matched answers). Slow: CI runs it, the default run does not.
/// </summary>
[Trait("Category", "Slow")]
public sealed class EmbeddedDefaultProcessTests
{
    [Fact]
    public async Task EmbeddedDefault_HundredClientsThousandRequests_AllAnsweredAndMatched()
    {
        var port = Ports.Free();
        await using var grid = await GridProcess.StartAsync(port);
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


    /// <summary>The Frontend executable started as its own process, with the repository's appsettings.json.</summary>
    private sealed class GridProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();
        private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private GridProcess(Process process) => _process = process;

        public static async Task<GridProcess> StartAsync(int port, string? workingDirectory = null)
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
