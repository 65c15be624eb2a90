using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Options;

namespace StreamInfer.Tests.Grains.Devices;

public sealed class DeviceRegistryTests : IDisposable
{
    private readonly DeviceRegistry _devices = new(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);

    [Fact]
    public async Task DisposeOn_BusyDevice_FreesAfterTheQueuedWorkOnTheDeviceThread()
    {
        using var gate = new ManualResetEventSlim();
        var running = _devices.Default.RunAsync(() =>
        {
            gate.Wait();
            return Environment.CurrentManagedThreadId;
        });
        var instance = new Probe();

        _devices.DisposeOn(_devices.Default.Name, instance);
        Assert.False(instance.Disposed.Task.IsCompleted);
        gate.Set();

        var deviceThread = await running.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(deviceThread, await instance.Disposed.Task.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void DisposeOn_UnknownDevice_FreesAtOnceOnTheCallersThread()
    {
        var instance = new Probe();

        _devices.DisposeOn("cuda7", instance);

        Assert.True(instance.Disposed.Task.IsCompletedSuccessfully);
        Assert.Equal(Environment.CurrentManagedThreadId, instance.DisposedOn);
    }

    public void Dispose() => _devices.Dispose();

    private sealed class Probe : IDisposable
    {
        public TaskCompletionSource<int> Disposed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int DisposedOn { get; private set; }

        public void Dispose()
        {
            DisposedOn = Environment.CurrentManagedThreadId;
            Disposed.TrySetResult(DisposedOn);
        }
    }
}
