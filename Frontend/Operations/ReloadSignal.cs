using System.Runtime.InteropServices;

namespace StreamInfer.Frontend.Operations;

/// <summary>
/// SIGHUP reloads the model repository, as <c>POST /api/reload</c> does (the Unix convention for "re-read your
/// configuration"); the process keeps running. Where the platform has no SIGHUP, nothing is registered.
/// </summary>
internal sealed partial class ReloadSignal(IClusterClient client, ILogger<ReloadSignal> logger) : IHostedService, IDisposable
{
    private PosixSignalRegistration? _registration;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            _registration = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
            {
                context.Cancel = true;
                _ = ReloadAsync();
            });
        }
        catch (PlatformNotSupportedException)
        {
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _registration?.Dispose();
        _registration = null;
    }

    private async Task ReloadAsync()
    {
        try
        {
            LogSignal(logger);
            var report = await client.GetGrain<IRepositoryGrain>(ModelAdminEndpoints.RepositoryKey).ReloadAsync();
            LogReloaded(logger, report.Added.Length, report.Removed.Length, report.Rollouts.Length, report.Errors.Length);
        }
        catch (Exception ex)
        {
            LogReloadFailed(logger, ex);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "SIGHUP: reloading the model repository")]
    private static partial void LogSignal(ILogger logger);

    [LoggerMessage(Level = LogLevel.Information, Message = "Reload done: {Added} added, {Removed} removed, {Rollouts} rollouts, {Errors} problems")]
    private static partial void LogReloaded(ILogger logger, int added, int removed, int rollouts, int errors);

    [LoggerMessage(Level = LogLevel.Error, Message = "Reloading the model repository on SIGHUP failed")]
    private static partial void LogReloadFailed(ILogger logger, Exception ex);
}
