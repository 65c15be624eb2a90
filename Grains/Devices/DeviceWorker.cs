using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace StreamInfer.Grains.Devices;

/// <summary>
/// One device (a GPU, or the CPU): a dedicated thread that runs the batches handed to it, one at a time, in the order
/// they arrive, through a bounded channel. Callers await the returned task; its continuation is posted back to the
/// caller's scheduler, so no model code ever runs on a grain's turn.
/// </summary>
public sealed partial class DeviceWorker : IDisposable
{
    private readonly Channel<IJob> _jobs;
    private readonly Thread _thread;
    private readonly ILogger _logger;
    private long _jobsStarted;

    public DeviceWorker(string name, DeviceKind kind, int? cudaId, int queueCapacity, ILogger logger)
    {
        Name = name;
        Kind = kind;
        CudaId = cudaId;
        _logger = logger;
        _jobs = Channel.CreateBounded<IJob>(new BoundedChannelOptions(queueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _thread = new Thread(Loop) { IsBackground = true, Name = $"streaminfer-device-{name}" };
        _thread.Start();
    }

    /// <summary>The device name used in batcher keys, e.g. <c>cpu0</c> or <c>cuda0</c>.</summary>
    public string Name { get; }

    /// <summary>CPU or CUDA.</summary>
    public DeviceKind Kind { get; }

    /// <summary>The CUDA device id of a GPU worker; null on the CPU.</summary>
    public int? CudaId { get; }

    /// <summary>How many jobs the device thread has started, counted as each starts.</summary>
    public long JobsStarted => Interlocked.Read(ref _jobsStarted);

    /// <summary>Runs <paramref name="work"/> on the device thread. Waits (asynchronously) while the channel is full.</summary>
    public async Task<T> RunAsync<T>(Func<T> work)
    {
        var job = new Job<T>(work);
        if (!_jobs.Writer.TryWrite(job))
        {
            await _jobs.Writer.WriteAsync(job);
        }

        return await job.Completion.Task;
    }

    /// <summary>
    /// Queues <paramref name="work"/> for the device thread without a task to await (the device's own loops queue
    /// their next step this way). <paramref name="work"/> must not throw. <paramref name="refused"/> runs instead, on
    /// some thread, if the worker has stopped.
    /// </summary>
    public void Post(Action work, Action refused)
    {
        var job = new ActionJob(work);
        if (!_jobs.Writer.TryWrite(job))
        {
            _ = PostLaterAsync(job, refused);
        }
    }

    private async Task PostLaterAsync(IJob job, Action refused)
    {
        try
        {
            await _jobs.Writer.WriteAsync(job).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            refused();
        }
    }

    public void Dispose()
    {
        _jobs.Writer.TryComplete();
        _thread.Join(TimeSpan.FromSeconds(5));
    }

    private void Loop()
    {
        var reader = _jobs.Reader;
        // This thread belongs to the device: blocking here is the point.
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            while (reader.TryRead(out var job))
            {
                Interlocked.Increment(ref _jobsStarted);
                job.Execute();
            }
        }

        LogStopped(_logger, Name);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Device worker {Device} stopped")]
    private static partial void LogStopped(ILogger logger, string device);

    private interface IJob
    {
        void Execute();
    }

    private sealed class ActionJob(Action work) : IJob
    {
        public void Execute() => work();
    }

    private sealed class Job<T>(Func<T> work) : IJob
    {
        public TaskCompletionSource<T> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Execute()
        {
            try
            {
                Completion.TrySetResult(work());
            }
            catch (Exception ex)
            {
                Completion.TrySetException(ex);
            }
        }
    }
}
