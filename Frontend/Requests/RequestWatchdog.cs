namespace StreamInfer.Frontend.Requests;

/// <summary>Ends, every second, the requests whose answer never came (a silo lost with them), so no client waits forever.</summary>
internal sealed class RequestWatchdog(RequestSubmitter submitter, TimeProvider time) : IHostedService, IDisposable
{
    private static readonly TimeSpan Period = TimeSpan.FromSeconds(1);

    private ITimer? _timer;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _timer = time.CreateTimer(_ => submitter.ExpireOverdue(), null, Period, Period);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _timer?.Dispose();
        return Task.CompletedTask;
    }

    public void Dispose() => _timer?.Dispose();
}
