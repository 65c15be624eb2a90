using System.Collections.Frozen;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Devices;

/// <summary>
/// The devices this silo owns: one worker per GPU that ONNX Runtime's CUDA provider can start on (<c>cuda0</c>,
/// <c>cuda1</c>...), or else one CPU device, <c>cpu0</c>. A CUDA start failure is logged once, with its
/// reason, and the silo serves on the CPU.
/// </summary>
public sealed partial class DeviceRegistry : IDisposable
{
    private readonly FrozenDictionary<string, DeviceWorker> _devices;
    private readonly DeviceOptions _options;

    public DeviceRegistry(IOptions<DeviceOptions> options, ILoggerFactory loggers)
    {
        _options = options.Value;
        var logger = loggers.CreateLogger<DeviceRegistry>();
        var workerLogger = loggers.CreateLogger<DeviceWorker>();
        var workers = new List<DeviceWorker>();
        var gpus = RequestedGpus(_options.Gpus);
        if (gpus.Count > 0)
        {
            var failures = new List<string>();
            foreach (var id in gpus)
            {
                if (TryStartCuda(id, out var reason))
                {
                    workers.Add(new DeviceWorker($"cuda{id}", DeviceKind.Cuda, id, _options.QueueCapacity, workerLogger));
                }
                else
                {
                    failures.Add($"GPU {id}: {reason}");
                }
            }

            if (failures.Count > 0)
            {
                LogCudaFailed(logger, string.Join("; ", failures));
            }
        }

        if (workers.Count == 0)
        {
            workers.Add(new DeviceWorker("cpu0", DeviceKind.Cpu, null, _options.QueueCapacity, workerLogger));
        }

        _devices = workers.ToFrozenDictionary(w => w.Name, StringComparer.Ordinal);
        Default = workers[0];
        LogDevices(logger, string.Join(", ", workers.Select(w => w.Name)));
    }

    /// <summary>The device new work goes to when the caller has no preference.</summary>
    public DeviceWorker Default { get; }

    public IEnumerable<DeviceWorker> Devices => _devices.Values;

    public bool TryGet(string name, out DeviceWorker device) => _devices.TryGetValue(name, out device!);

    /// <summary>ONNX Runtime session options for a model on <paramref name="device"/>. The caller disposes them.</summary>
    public SessionOptions CreateSessionOptions(DeviceWorker device)
    {
        var so = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            // One batch runs at a time per device thread: parallelism comes from within operators.
            InterOpNumThreads = 1,
            IntraOpNumThreads = device.Kind == DeviceKind.Cpu
                ? (_options.CpuThreads > 0 ? _options.CpuThreads : Environment.ProcessorCount)
                : 1,
        };
        so.AddSessionConfigEntry("session.intra_op.allow_spinning", _options.AllowSpinning ? "1" : "0");
        if (device.Kind == DeviceKind.Cuda)
        {
            so.AppendExecutionProvider_CUDA(device.CudaId!.Value);
        }

        return so;
    }

    /// <summary>
    /// Frees <paramref name="instance"/> on its device's thread, after any batch still queued there: a session must not
    /// be freed under a run. A device that has stopped runs nothing more, so the instance is freed at once.
    /// </summary>
    public void DisposeOn(string deviceName, IDisposable instance)
    {
        try
        {
            if (TryGet(deviceName, out var device))
            {
                _ = device.RunAsync(() => { instance.Dispose(); return true; });
                return;
            }
        }
        catch (ChannelClosedException)
        {
        }

        instance.Dispose();
    }

    /// <summary>As <see cref="DisposeOn"/>, but waits (at most <paramref name="timeout"/>) for the device to free it.</summary>
    public void DisposeOnAndWait(string deviceName, IDisposable instance, TimeSpan timeout)
    {
        try
        {
            if (TryGet(deviceName, out var device) && device.RunAsync(() => { instance.Dispose(); return true; }).Wait(timeout))
            {
                return;
            }
        }
        catch (Exception ex) when (ex is AggregateException or ChannelClosedException)
        {
        }

        instance.Dispose();
    }

    public void Dispose()
    {
        foreach (var device in _devices.Values)
        {
            device.Dispose();
        }
    }

    private static List<int> RequestedGpus(string setting)
    {
        if (setting == "none")
        {
            return [];
        }

        if (setting != "auto")
        {
            return [.. setting.Split(',').Select(g => int.Parse(g.Trim(), System.Globalization.CultureInfo.InvariantCulture))];
        }

        // CUDA numbers the visible GPUs from 0; the driver lists every GPU under /proc (one folder per PCI device).
        var visible = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES");
        int count;
        if (visible is not null)
        {
            count = visible.Split(',', StringSplitOptions.RemoveEmptyEntries).Count(v => !v.Trim().StartsWith('-'));
        }
        else
        {
            count = Directory.Exists("/proc/driver/nvidia/gpus") ? Directory.GetDirectories("/proc/driver/nvidia/gpus").Length : 0;
        }

        return [.. Enumerable.Range(0, count)];
    }

    private static bool TryStartCuda(int id, out string reason)
    {
        try
        {
            using var so = new SessionOptions();
            so.AppendExecutionProvider_CUDA(id);
            reason = string.Empty;
            return true;
        }
        catch (Exception ex)
        {
            reason = ex.Message;
            return false;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The CUDA execution provider could not start, so models run on the CPU: {Reason}")]
    private static partial void LogCudaFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Devices: {Devices}")]
    private static partial void LogDevices(ILogger logger, string devices);
}

/// <summary>What kind of device a worker drives.</summary>
public enum DeviceKind
{
    /// <summary>The CPU, through ONNX Runtime's CPU provider.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU, through ONNX Runtime's CUDA provider.</summary>
    Cuda,
}
