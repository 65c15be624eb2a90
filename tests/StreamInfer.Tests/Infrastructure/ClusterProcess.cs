using System.Diagnostics;
using System.Globalization;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>
/// A real multi-process cluster started with the shipped scripts (deploy/cluster-up.sh and cluster-down.sh): a
/// redis-server, silos and frontends, each its own process, on ports of their own and a run folder of their own.
/// </summary>
public sealed class ClusterProcess : IAsyncDisposable
{
    private readonly string _root;
    private readonly Dictionary<string, string> _env;

    private ClusterProcess(string root, Dictionary<string, string> env)
    {
        _root = root;
        _env = env;
    }

    public string RunDir => _env["RUN_DIR"];

    /// <summary>The frontends' admin key, which cluster-up.sh generated in the run folder.</summary>
    public string AdminKey => File.ReadAllText(Path.Combine(RunDir, "secrets", "admin-key")).Trim();

    public int HttpBase { get; private init; }

    /// <summary>The HTTP address of frontend <paramref name="j"/> (from 1).</summary>
    public Uri Frontend(int j) => new($"http://127.0.0.1:{HttpBase + j}");

    /// <summary>The WebSocket address of frontend <paramref name="j"/> (from 1).</summary>
    public Uri FrontendWs(int j) => new($"ws://127.0.0.1:{HttpBase + j}/ws");

    /// <summary>Starts <paramref name="silos"/> silos and <paramref name="frontends"/> frontends and waits until every frontend sees every silo.</summary>
    public static async Task<ClusterProcess> StartAsync(int silos, int frontends, IDictionary<string, string>? settings = null)
    {
        var root = RepositoryRoot();
        // Ports in blocks of ten, picked at random above the ephemeral range's usual start, so runs do not collide.
        var block = Random.Shared.Next(2000, 2800) * 10;
        var env = new Dictionary<string, string>
        {
            ["RUN_DIR"] = Path.Combine(Path.GetTempPath(), "streaminfer-tests", "cluster-" + Guid.NewGuid().ToString("N")),
            ["REDIS_PORT"] = Ports.FreeText(),
            ["HTTP_BASE"] = (block - 10000).ToString(CultureInfo.InvariantCulture),
            ["SILO_PORT_BASE"] = block.ToString(CultureInfo.InvariantCulture),
            ["GATEWAY_BASE"] = (block + 5000).ToString(CultureInfo.InvariantCulture),
            ["METRICS_BASE"] = (block + 100).ToString(CultureInfo.InvariantCulture),
            ["CLUSTER_ID"] = "test-" + Guid.NewGuid().ToString("N")[..8],
            ["CONFIG"] = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release",
            ["NO_BUILD"] = "1",
            // Silos here come and go on purpose: keep the built-in models out of it (every silo would generate them).
            ["StreamInfer__Repository__BuiltInTinyLm"] = "false",
            ["StreamInfer__Repository__BuiltInVadLite"] = "false",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string>())
        {
            env[key] = value;
        }

        var cluster = new ClusterProcess(root, env) { HttpBase = int.Parse(env["HTTP_BASE"], CultureInfo.InvariantCulture) };
        var (code, output) = await cluster.RunScriptAsync("deploy/cluster-up.sh", TimeSpan.FromSeconds(150), silos.ToString(CultureInfo.InvariantCulture), frontends.ToString(CultureInfo.InvariantCulture));
        if (code != 0)
        {
            var logs = string.Join("\n", Directory.Exists(cluster.RunDir) ? Directory.GetFiles(cluster.RunDir, "*.log").Select(f => $"--- {Path.GetFileName(f)}\n{Tail(f)}") : []);
            await cluster.DisposeAsync();
            throw new InvalidOperationException($"cluster-up.sh failed ({code}):\n{output}\n{logs}");
        }

        return cluster;
    }

    /// <summary>SIGKILLs the process named <paramref name="name"/> (e.g. <c>silo-2</c>, <c>frontend-1</c>, <c>redis</c>) as cluster-up recorded it.</summary>
    public void Kill(string name)
    {
        var pid = File.ReadAllLines(Path.Combine(RunDir, "pids"))
            .Select(l => l.Split(' '))
            .Last(p => p[1] == name)[2];
        using var process = Process.GetProcessById(int.Parse(pid, CultureInfo.InvariantCulture));
        process.Kill();
        process.WaitForExit(10_000);
    }

    /// <summary>
    /// SIGTERMs the process named <paramref name="name"/> (a graceful stop: a silo drains) and waits for it to exit;
    /// returns how long that took.
    /// </summary>
    public async Task<TimeSpan> TerminateAsync(string name, TimeSpan timeout)
    {
        var pid = int.Parse(File.ReadAllLines(Path.Combine(RunDir, "pids"))
            .Select(l => l.Split(' '))
            .Last(p => p[1] == name)[2], CultureInfo.InvariantCulture);
        using var process = Process.GetProcessById(pid);
        var started = Stopwatch.GetTimestamp();
        using (var kill = Process.Start("kill", ["-TERM", pid.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        using var cts = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(cts.Token);
        return Stopwatch.GetElapsedTime(started);
    }

    /// <summary>Starts silo <paramref name="i"/> again (same name, same ports).</summary>
    public Task<(int Code, string Output)> RestartSiloAsync(int i) => RunScriptAsync("deploy/cluster-up.sh", TimeSpan.FromSeconds(30), "--silo", i.ToString(CultureInfo.InvariantCulture));

    /// <summary>Starts redis-server again (it reloads its append-only file).</summary>
    public Task<(int Code, string Output)> RestartRedisAsync() => RunScriptAsync("deploy/cluster-up.sh", TimeSpan.FromSeconds(30), "--redis");

    /// <summary>Silo <paramref name="i"/>'s Prometheus metrics endpoint.</summary>
    public Uri SiloMetrics(int i) => new($"http://127.0.0.1:{int.Parse(_env["METRICS_BASE"], CultureInfo.InvariantCulture) + i}/metrics");

    /// <summary>The number of active silos frontend <paramref name="j"/> sees.</summary>
    public async Task<int> ActiveSilosAsync(int j)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync(new Uri(Frontend(j), "/api/cluster")));
            return doc.RootElement.GetProperty("active").GetInt32();
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return -1;
        }
    }

    public string Log(string name) => Tail(Path.Combine(RunDir, name + ".log"));

    /// <summary>Whether the whole log of <paramref name="name"/> so far contains <paramref name="text"/>.</summary>
    public bool LogContains(string name, string text)
    {
        using var stream = new FileStream(Path.Combine(RunDir, name + ".log"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd().Contains(text, StringComparison.Ordinal);
    }

    public async ValueTask DisposeAsync()
    {
        // The run folder (logs) stays under the temp folder, for a failure to be read.
        await RunScriptAsync("deploy/cluster-down.sh", TimeSpan.FromSeconds(90));
    }

    private async Task<(int Code, string Output)> RunScriptAsync(string script, TimeSpan timeout, params string[] args)
    {
        var info = new ProcessStartInfo("bash")
        {
            WorkingDirectory = _root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(script);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in _env)
        {
            info.Environment[key] = value;
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(timeout);
        return (process.ExitCode, await stdout + await stderr);
    }

    private static string Tail(string file)
    {
        if (!File.Exists(file))
        {
            return "(no log)";
        }

        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        var text = reader.ReadToEnd();
        return text.Length > 4000 ? text[^4000..] : text;
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "StreamInfer.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("StreamInfer.sln not found above the test binaries.");
    }
}
