using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>A real redis-server on a free loopback port, for tests of what a cluster keeps in Redis (CI installs it).</summary>
public sealed class RedisServer : IAsyncDisposable
{
    private readonly Process _process;

    private RedisServer(Process process, int port)
    {
        _process = process;
        Port = port;
    }

    public int Port { get; }

    public string ConnectionString => $"127.0.0.1:{Port}";

    public static async Task<RedisServer> StartAsync()
    {
        var port = Ports.Free();
        var info = new ProcessStartInfo("redis-server") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no" })
        {
            info.ArgumentList.Add(arg);
        }

        var server = new RedisServer(Process.Start(info)!, port);
        server._process.BeginOutputReadLine();
        server._process.BeginErrorReadLine();
        await Eventually.UntilAsync(server.AcceptsAsync, up => up || server._process.HasExited, TimeSpan.FromSeconds(15), "redis-server accepts connections");
        if (server._process.HasExited)
        {
            throw new InvalidOperationException($"redis-server exited with {server._process.ExitCode}.");
        }

        return server;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }

        _process.Dispose();
    }

    private async Task<bool> AcceptsAsync()
    {
        using var socket = new TcpClient();
        try
        {
            await socket.ConnectAsync("127.0.0.1", Port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
