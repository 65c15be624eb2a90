using System.Collections.Frozen;
using Microsoft.Extensions.Logging;

namespace StreamInfer.Grains.Devices;

/// <summary>
/// The devices this silo owns. At this stage one CPU device, <c>cpu0</c>; GPUs join with the ONNX Runtime engine.
/// </summary>
public sealed class DeviceRegistry : IDisposable
{
    private readonly FrozenDictionary<string, DeviceWorker> _devices;

    public DeviceRegistry(ILoggerFactory loggers)
    {
        var cpu = new DeviceWorker("cpu0", queueCapacity: 64, loggers.CreateLogger<DeviceWorker>());
        _devices = new Dictionary<string, DeviceWorker> { [cpu.Name] = cpu }.ToFrozenDictionary(StringComparer.Ordinal);
        Default = cpu;
    }

    /// <summary>The device new work goes to when the caller has no preference.</summary>
    public DeviceWorker Default { get; }

    public IEnumerable<DeviceWorker> Devices => _devices.Values;

    public bool TryGet(string name, out DeviceWorker device) => _devices.TryGetValue(name, out device!);

    public void Dispose()
    {
        foreach (var device in _devices.Values)
        {
            device.Dispose();
        }
    }
}
