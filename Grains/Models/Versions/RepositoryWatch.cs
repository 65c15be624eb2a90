using System.Text;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models.Versions;

/// <summary>
/// The optional repository watch (<c>StreamInfer:Repository:WatchInterval</c>, off by default): polls the repository's
/// folders and files (names, sizes, modification times) and, when anything changed, asks the repository grain to
/// reload, exactly as <c>POST /api/reload</c> does. Polling rather than file-system events: they are unreliable on
/// network and container volumes, and a model is several files written one after another.
/// </summary>
internal sealed partial class RepositoryWatch(
    ModelCatalog catalog,
    RepositorySync repository,
    IGrainFactory grains,
    IOptions<ModelRepositoryOptions> options,
    ILogger<RepositoryWatch> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = options.Value.WatchInterval;
        if (interval <= TimeSpan.Zero)
        {
            return;
        }

        // Faster polling would cost more than it saves: listing a repository is a directory walk.
        interval = interval < TimeSpan.FromMilliseconds(100) ? TimeSpan.FromMilliseconds(100) : interval;

        try
        {
            await catalog.Loaded.WaitAsync(stoppingToken);
            var seen = Fingerprint(repository.RepositoryPath);
            using var timer = new PeriodicTimer(interval);
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                var now = Fingerprint(repository.RepositoryPath);
                if (now == seen)
                {
                    continue;
                }

                // A change seen mid-write (a model's files copied one by one) is reloaded once it has settled.
                await Task.Delay(interval, stoppingToken);
                var settled = Fingerprint(repository.RepositoryPath);
                if (settled != now)
                {
                    continue;
                }

                seen = settled;
                try
                {
                    var report = await grains.GetGrain<IRepositoryGrain>("repository").ReloadAsync();
                    LogReloaded(logger, report.Added.Length, report.Removed.Length, report.Rollouts.Length, report.Errors.Length);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    LogReloadFailed(logger, ex);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Every folder and file under the repository with its size and modification time, in one string.</summary>
    internal static string Fingerprint(string root)
    {
        if (!Directory.Exists(root))
        {
            return string.Empty;
        }

        var text = new StringBuilder();
        foreach (var path in Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            if (Path.GetFileName(path).StartsWith('.'))
            {
                continue;
            }

            var info = new FileInfo(path);
            text.Append(path).Append('|').Append(info.Exists ? info.Length : -1).Append('|').Append(File.GetLastWriteTimeUtc(path).Ticks).Append('\n');
        }

        return text.ToString();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Repository change seen: {Added} added, {Removed} removed, {Rollouts} rollouts, {Errors} problems")]
    private static partial void LogReloaded(ILogger logger, int added, int removed, int rollouts, int errors);

    [LoggerMessage(Level = LogLevel.Error, Message = "Reloading the model repository after a change failed")]
    private static partial void LogReloadFailed(ILogger logger, Exception ex);
}
