namespace StreamInfer.Frontend.Protocol;

/// <summary>
/// The request bytes one connection (a WebSocket, a gRPC stream) may hold at once: binary payloads stay in memory until
/// their requests end, so without it one connection could hold its whole backlog of maximal requests. A receive loop
/// takes a request's bytes before it reads the next one and waits while the budget is spent, so a client that sends
/// faster than its requests end is slowed by TCP flow control, not buffered. A single request larger than the whole
/// budget is let through once nothing else is held, so a request within the size limits is never refused by it.
/// </summary>
internal sealed class ByteBudget(long capacity)
{
    private readonly Lock _gate = new();
    private long _held;
    private TaskCompletionSource? _freed;

    /// <summary>Bytes held now.</summary>
    public long Held
    {
        get
        {
            lock (_gate)
            {
                return _held;
            }
        }
    }

    /// <summary>Takes <paramref name="bytes"/>, waiting while they do not fit beside what is held.</summary>
    public async ValueTask TakeAsync(long bytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task freed;
            lock (_gate)
            {
                if (_held == 0 || _held + bytes <= capacity)
                {
                    _held += bytes;
                    return;
                }

                _freed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                freed = _freed.Task;
            }

            await freed.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Gives back <paramref name="bytes"/> taken before; wakes a waiting receive loop.</summary>
    public void Release(long bytes)
    {
        TaskCompletionSource? freed;
        lock (_gate)
        {
            _held = Math.Max(0, _held - bytes);
            freed = _freed;
            _freed = null;
        }

        freed?.TrySetResult();
    }
}
