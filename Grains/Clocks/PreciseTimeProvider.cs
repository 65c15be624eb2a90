using System.Diagnostics;

namespace StreamInfer.Grains.Clocks;

/// <summary>
/// A <see cref="TimeProvider"/> whose timers fire within about a millisecond of their due time. .NET's own timers are
/// quantised to the kernel's coarse clock, so a batcher's short MaxWait would wait a whole tick (docs/decisions.md D3).
/// Here one dedicated thread keeps the timers in a priority queue and sleeps on a precise monotonic wait until the
/// earliest is due; callbacks run on the thread pool, as .NET's timers do.
/// <para>
/// Precision costs CPU while nothing happens: periodic grain timers would fire at full rate on an idle grid. So the
/// provider idles: when no <see cref="NotifyActivity"/> came for <see cref="IdleAfter"/>, it fires timers at most every
/// <see cref="IdleResolution"/>; the next <see cref="NotifyActivity"/> wakes it at once. The grid signals when a
/// request is admitted and when a batcher delivers results, so an answer is never left to an idle tick.
/// </para>
/// </summary>
public sealed class PreciseTimeProvider : TimeProvider, IActivitySignal, IDisposable
{
    private readonly object _lock = new();
    private readonly long _idleAfterTicks;
    private readonly int _idleResolutionMs;
    private long _lastActivity;
    private readonly PriorityQueue<(PreciseTimer Timer, long Version), long> _due = new();
    private readonly Thread _thread;
    private bool _disposed;

    public PreciseTimeProvider(TimeSpan? idleAfter = null, TimeSpan? idleResolution = null)
    {
        IdleAfter = idleAfter ?? TimeSpan.FromSeconds(1);
        IdleResolution = idleResolution ?? TimeSpan.FromMilliseconds(50);
        _idleAfterTicks = (long)(IdleAfter.TotalSeconds * Stopwatch.Frequency);
        _idleResolutionMs = Math.Max(1, (int)IdleResolution.TotalMilliseconds);
        _lastActivity = Stopwatch.GetTimestamp();
        _thread = new Thread(Run) { IsBackground = true, Name = "streaminfer-precise-timers" };
        _thread.Start();
    }

    /// <summary>How long without activity before timers are paced at <see cref="IdleResolution"/>.</summary>
    public TimeSpan IdleAfter { get; }

    /// <summary>The pace of timers while idle.</summary>
    public TimeSpan IdleResolution { get; }

    /// <summary>Work arrived: fire timers precisely from now on (and at once, if the provider was idling).</summary>
    public void NotifyActivity()
    {
        var now = Stopwatch.GetTimestamp();
        var last = Volatile.Read(ref _lastActivity);
        Volatile.Write(ref _lastActivity, now);
        if (now - last > _idleAfterTicks)
        {
            lock (_lock)
            {
                Monitor.Pulse(_lock);
            }
        }
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        ArgumentNullException.ThrowIfNull(callback);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var timer = new PreciseTimer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            Monitor.PulseAll(_lock);
        }
    }

    private void Schedule(PreciseTimer timer, long dueTimestamp, long version)
    {
        lock (_lock)
        {
            var wakeNeeded = !_due.TryPeek(out _, out var head) || dueTimestamp < head;
            _due.Enqueue((timer, version), dueTimestamp);
            if (wakeNeeded)
            {
                Monitor.Pulse(_lock);
            }
        }
    }

    private void Run()
    {
        var fire = new List<PreciseTimer>();
        while (true)
        {
            lock (_lock)
            {
                while (true)
                {
                    if (_disposed)
                    {
                        return;
                    }

                    if (!_due.TryPeek(out var entry, out var dueAt))
                    {
                        if (fire.Count > 0)
                        {
                            break;
                        }

                        Monitor.Wait(_lock);
                        continue;
                    }

                    if (entry.Version != entry.Timer.Version)
                    {
                        _due.Dequeue();
                        continue;
                    }

                    var now = Stopwatch.GetTimestamp();
                    if (dueAt <= now)
                    {
                        _due.Dequeue();
                        fire.Add(entry.Timer);
                        // Collect everything else that is due in the same pass.
                        continue;
                    }

                    if (fire.Count > 0)
                    {
                        break;
                    }

                    // Monitor.Wait sleeps on a monotonic clock with millisecond precision, unlike the coarse timer queue.
                    var waitMs = Math.Max(1, (int)Math.Ceiling((dueAt - now) * 1000.0 / Stopwatch.Frequency));
                    if (now - Volatile.Read(ref _lastActivity) > _idleAfterTicks && waitMs < _idleResolutionMs)
                    {
                        // Idle: pace the timers. NotifyActivity pulses this wait when work arrives.
                        Monitor.Wait(_lock, _idleResolutionMs);
                        var woke = Stopwatch.GetTimestamp();
                        if (woke - Volatile.Read(ref _lastActivity) > _idleAfterTicks)
                        {
                            // Still idle: fire what is due now, even if the wait was cut short by a new timer.
                            FireDue(woke, fire);
                            if (fire.Count > 0)
                            {
                                break;
                            }
                        }

                        continue;
                    }

                    Monitor.Wait(_lock, waitMs);
                }

                foreach (var timer in fire)
                {
                    timer.Rearm();
                }
            }

            foreach (var timer in fire)
            {
                ThreadPool.UnsafeQueueUserWorkItem(static t => t.Invoke(), timer, preferLocal: false);
            }

            fire.Clear();
        }
    }

    private void FireDue(long now, List<PreciseTimer> fire)
    {
        while (_due.TryPeek(out var entry, out var dueAt) && dueAt <= now)
        {
            _due.Dequeue();
            if (entry.Version == entry.Timer.Version)
            {
                fire.Add(entry.Timer);
            }
        }
    }

    private sealed class PreciseTimer(PreciseTimeProvider owner, TimerCallback callback, object? state) : ITimer
    {
        private long _periodTicks;

        // Bumped by every Change and Dispose so that queue entries made before it are skipped. Read under the owner's lock.
        public long Version { get; private set; }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            long version;
            long dueAt;
            if ((dueTime < TimeSpan.Zero && dueTime != Timeout.InfiniteTimeSpan) || (period < TimeSpan.Zero && period != Timeout.InfiniteTimeSpan))
            {
                throw new ArgumentOutOfRangeException(dueTime < TimeSpan.Zero ? nameof(dueTime) : nameof(period), "must be non-negative or Timeout.InfiniteTimeSpan.");
            }

            // Beyond a century a timer will not fire in this process's life; clamping keeps the tick arithmetic in range.
            var century = TimeSpan.FromDays(36500);
            dueTime = dueTime > century ? century : dueTime;
            period = period > century ? century : period;
            lock (owner._lock)
            {
                if (Version < 0)
                {
                    return false;
                }

                version = ++Version;
                _periodTicks = period == Timeout.InfiniteTimeSpan || period <= TimeSpan.Zero ? 0 : (long)(period.TotalSeconds * Stopwatch.Frequency);
                if (dueTime == Timeout.InfiniteTimeSpan)
                {
                    return true;
                }

                dueAt = Stopwatch.GetTimestamp() + (long)(dueTime.TotalSeconds * Stopwatch.Frequency);
            }

            owner.Schedule(this, dueAt, version);
            return true;
        }

        /// <summary>Re-queues a periodic timer after it fired; called under the owner's lock.</summary>
        public void Rearm()
        {
            if (_periodTicks > 0 && Version >= 0)
            {
                owner._due.Enqueue((this, Version), Stopwatch.GetTimestamp() + _periodTicks);
            }
        }

        public void Invoke() => callback(state);

        public void Dispose()
        {
            lock (owner._lock)
            {
                Version = -1;
            }
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
