using System.Diagnostics;
using System.Globalization;
using Grpc.Core;
using Grpc.Net.Client;
using StreamInfer.Frontend.Grpc.V2;

namespace StreamInfer.LoadGen;

/// <summary>
/// A gRPC streaming client of the run (<c>--protocol grpc-stream</c>): one <c>ModelStreamInfer</c> call per connection,
/// <c>depth</c> slots writing requests on it, each with its own id, and a receive loop matching the answers (in any
/// order) to the ids. An answer with an <c>error_message</c> counts under its <c>streaminfer_code</c> parameter (else
/// <c>error</c>), and its slot waits out a <c>retry_after_ms</c>; the stream's end during the run counts its requests
/// in flight as lost.
/// </summary>
internal sealed class GrpcStreamConnection : ILoadConnection
{
    private readonly ModelInferRequest _template;
    private readonly Payload _payload;
    private readonly int _verifyEvery;
    private readonly int _depth;
    private readonly double _slotIntervalTicks;
    private readonly Metadata _headers = new() { { "x-client-id", $"loadgen-{Guid.NewGuid():N}" } };
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly InFlight _pending = new();
    private GrpcChannel? _channel;
    private AsyncDuplexStreamingCall<ModelInferRequest, ModelStreamInferResponse>? _call;
    private Task _receiveLoop = Task.CompletedTask;
    private Task _slots = Task.CompletedTask;
    private long _measureStart;
    private long _measureEnd;
    private long _nextId;
    private long _sent;
    private volatile bool _closing;
    private bool _dead; // written under _sendLock

    public GrpcStreamConnection(string model, Payload payload, int verifyEvery, int depth, TimeSpan slotInterval = default)
    {
        _template = GrpcConnection.NewRequest(model, payload, verifyEvery > 0);
        _payload = payload;
        _verifyEvery = verifyEvery;
        _depth = depth;
        _slotIntervalTicks = slotInterval.TotalSeconds * Stopwatch.Frequency;
        Stats = new ConnectionStats(Math.Min(Math.Max(depth, 1) * 1024, 1 << 20));
    }

    public ConnectionStats Stats { get; }

    public long Sent => Interlocked.Read(ref _sent);

    public Task Slots => _slots;

    public async Task ConnectAsync(Uri url, TimeSpan timeout)
    {
        _channel = GrpcConnection.OpenChannel(url);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(_channel);
        await client.ServerLiveAsync(new ServerLiveRequest(), _headers, DateTime.UtcNow + timeout);
        _call = client.ModelStreamInfer(_headers);
    }

    public void Start(long measureStart, long measureEnd)
    {
        _measureStart = measureStart;
        _measureEnd = measureEnd;
        _receiveLoop = Task.Run(ReceiveLoopAsync);
        _slots = Task.WhenAll(Enumerable.Range(0, _depth).Select(_ => Task.Run(RunSlotAsync)));
    }

    public void ExpireOverdue(long now, TimeSpan timeout)
    {
        Interlocked.Add(ref Stats.Overdue, _pending.ExpireOverdue(now, timeout));
    }

    public int Abandon()
    {
        _closing = true;
        var abandoned = _pending.Drain();
        Interlocked.Add(ref Stats.Abandoned, abandoned);
        return abandoned;
    }

    /// <summary>Ends the request stream and waits (2 s at most) for the server to end its side; then cancels the call.</summary>
    public async Task CloseAsync()
    {
        _closing = true;
        try
        {
            if (_call is not null && await _sendLock.WaitAsync(TimeSpan.FromSeconds(2)))
            {
                try
                {
                    _dead = true;
                    await _call.RequestStream.CompleteAsync().WaitAsync(TimeSpan.FromSeconds(2));
                }
                finally
                {
                    _sendLock.Release();
                }
            }

            await _receiveLoop.WaitAsync(TimeSpan.FromSeconds(2));
        }
        catch (Exception ex) when (ex is RpcException or TimeoutException or InvalidOperationException or ObjectDisposedException)
        {
            _call?.Dispose();
        }
    }

    public void Dispose()
    {
        _call?.Dispose();
        _channel?.Dispose();
        _sendLock.Dispose();
    }

    private async Task RunSlotAsync()
    {
        var pacer = new SlotPacer(_slotIntervalTicks);
        while (Stopwatch.GetTimestamp() < _measureEnd)
        {
            await pacer.WaitTurnAsync();

            var id = Interlocked.Increment(ref _nextId);
            // A shallow copy with its own id: the inputs and the tensor's bytes are shared.
            var request = _template.Clone();
            request.Id = id.ToString(CultureInfo.InvariantCulture);
            PendingRequest pending;
            await _sendLock.WaitAsync();
            try
            {
                if (_dead)
                {
                    return;
                }

                pending = _pending.Add(id);
                await _call!.RequestStream.WriteAsync(request);
                Interlocked.Increment(ref _sent);
            }
            catch (Exception ex) when (ex is RpcException or InvalidOperationException or ObjectDisposedException or IOException)
            {
                _pending.Remove(id);
                return;
            }
            finally
            {
                _sendLock.Release();
            }

            var answer = await pending.Task;
            if (answer.Lost)
            {
                return;
            }

            if (answer.RetryAfterMs > 0)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(answer.RetryAfterMs));
            }
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var answers = 0L;
        try
        {
            await foreach (var answer in _call!.ResponseStream.ReadAllAsync())
            {
                var now = Stopwatch.GetTimestamp();
                var error = answer.ErrorMessage.Length > 0;
                if (!long.TryParse(answer.InferResponse?.Id, NumberStyles.None, CultureInfo.InvariantCulture, out var id))
                {
                    if (error)
                    {
                        ConnectionStats.Increment(Stats.ConnectionErrors, "error");
                    }
                    else
                    {
                        Stats.UnknownOrDuplicate++;
                    }

                    continue;
                }

                if (!_pending.TryTake(id, out var pending))
                {
                    Stats.UnknownOrDuplicate++;
                    continue;
                }

                var (outcome, retryAfterMs) = error ? GrpcConnection.StreamError(answer.InferResponse) : ("result", 0);
                if (!error && _verifyEvery > 0 && answers++ % _verifyEvery == 0 && !Stats.Verify(GrpcConnection.EchoMatches(answer.InferResponse!, _payload)))
                {
                    outcome = "mismatch";
                }

                Stats.Record(pending.SentAt, now, _measureStart, _measureEnd, outcome, error ? default : GrpcConnection.ReadTiming(answer.InferResponse!));

                if (!pending.TrySetResult(new SlotAnswer(Lost: false, retryAfterMs)))
                {
                    Stats.LateAnswers++;
                }
            }

            if (!_closing)
            {
                Stats.DropReason = "the server ended the stream";
            }
        }
        catch (Exception ex) when (ex is RpcException or IOException or InvalidOperationException or ObjectDisposedException)
        {
            if (!_closing)
            {
                Stats.DropReason = "the stream broke: " + ex.Message;
            }
        }
        finally
        {
            await _sendLock.WaitAsync();
            _dead = true;
            _sendLock.Release();
            Stats.AddLost(_pending.Drain(), _closing);
        }
    }
}
