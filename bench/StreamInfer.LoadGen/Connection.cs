using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net.WebSockets;
using System.Text.Json;

namespace StreamInfer.LoadGen;

/// <summary>
/// One WebSocket connection: a receive loop that matches terminal frames to request ids and records them, and
/// <c>depth</c> slots, each sending a request, awaiting its answer and sending the next until the run ends. Requests go
/// as JSON text frames, or as binary frames (a 4-byte little-endian header length, the JSON header, the tensor bytes);
/// a binary answer has the same layout, and text frames (errors, warnings) are read as JSON either way.
/// </summary>
internal sealed class Connection : ILoadConnection
{
    private const int InitialReceiveBuffer = 64 * 1024;

    private readonly ClientWebSocket _socket = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly InFlight _pending = new();
    private readonly RequestTemplate _template;
    private readonly int _depth;
    private readonly WebSocketMessageType _messageType;
    private readonly Payload _payload;
    private readonly int _verifyEvery;
    private long _measureStart;
    private long _measureEnd;
    private long _nextId;
    private long _sent;
    private volatile bool _closing;
    private bool _dead; // written under _sendLock
    private Task _receiveLoop = Task.CompletedTask;
    private Task _slots = Task.CompletedTask;

    private readonly double _slotIntervalTicks;
    private readonly int? _sequenceChunks;

    /// <summary>Sequence ids, unique in the process (every connection's sequences draw from it).</summary>
    private static long s_nextSequenceId;

    /// <param name="template">The request frame.</param>
    /// <param name="binary">Whether the frames are binary (else text).</param>
    /// <param name="payload">The tensor the requests carry, which an echo answer returns.</param>
    /// <param name="verifyEvery">Check every this many answers (and the first) against <paramref name="payload"/>; 0 never.</param>
    /// <param name="depth">Slots (requests in flight) on this connection.</param>
    /// <param name="slotInterval">Least time between two sends of one slot (paced runs); zero for closed loop.</param>
    /// <param name="sequenceChunks">
    /// Null: stateless requests. Else each slot is one sequence (the template carries its fields) that ends after this
    /// many chunks, or never for 0; a new one starts then, and after an error or an overdue answer.
    /// </param>
    public Connection(RequestTemplate template, bool binary, Payload payload, int verifyEvery, int depth, TimeSpan slotInterval = default, int? sequenceChunks = null)
    {
        _sequenceChunks = sequenceChunks;
        _template = template;
        _messageType = binary ? WebSocketMessageType.Binary : WebSocketMessageType.Text;
        _payload = payload;
        _verifyEvery = verifyEvery;
        _depth = depth;
        _slotIntervalTicks = slotInterval.TotalSeconds * Stopwatch.Frequency;
        Stats = new ConnectionStats(Math.Min(depth * 1024, 1 << 20));
    }

    public ConnectionStats Stats { get; }

    /// <summary>Requests sent, warm-up included.</summary>
    public long Sent => Interlocked.Read(ref _sent);

    /// <summary>Completes when every slot has stopped: the run is over and each slot's last request was answered, overdue or lost.</summary>
    public Task Slots => _slots;

    public async Task ConnectAsync(Uri url, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _socket.ConnectAsync(url, cts.Token);
    }

    /// <summary>Starts receiving and sending. Requests sent in [<paramref name="measureStart"/>, <paramref name="measureEnd"/>) are measured; none are sent after it.</summary>
    public void Start(long measureStart, long measureEnd)
    {
        _measureStart = measureStart;
        _measureEnd = measureEnd;
        _receiveLoop = Task.Run(ReceiveLoopAsync);
        var slots = new Task[_depth];
        for (var i = 0; i < slots.Length; i++)
        {
            var buffer = _template.NewBuffer();
            slots[i] = Task.Run(() => RunSlotAsync(buffer));
        }

        _slots = Task.WhenAll(slots);
    }

    /// <summary>
    /// Lets the slots whose request has waited longer than <paramref name="timeout"/> move on. The request stays in
    /// flight: an answer may still come (and is then measured), and if none does it counts as unanswered at the end.
    /// </summary>
    public void ExpireOverdue(long now, TimeSpan timeout)
    {
        Interlocked.Add(ref Stats.Overdue, _pending.ExpireOverdue(now, timeout));
    }

    /// <summary>Gives up on the requests still in flight, counting them as unanswered, and stops their slots.</summary>
    /// <returns>How many there were.</returns>
    public int Abandon()
    {
        _closing = true;
        var abandoned = _pending.Drain();
        Interlocked.Add(ref Stats.Abandoned, abandoned);
        return abandoned;
    }

    /// <summary>
    /// Closes the connection and waits for the receive loop to end, aborting the socket if either takes more than 2 s;
    /// call after <see cref="Abandon"/>.
    /// </summary>
    public async Task CloseAsync()
    {
        _closing = true;
        var timeout = TimeSpan.FromSeconds(2);
        try
        {
            if (await _sendLock.WaitAsync(timeout))
            {
                try
                {
                    if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
                    {
                        using var cts = new CancellationTokenSource(timeout);
                        await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "load run finished", cts.Token);
                    }
                }
                finally
                {
                    _sendLock.Release();
                }
            }

            await _receiveLoop.WaitAsync(timeout);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or TimeoutException or ObjectDisposedException)
        {
            _socket.Abort();
        }

        try
        {
            await _receiveLoop;
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The loop catches its own failures; this is only a backstop.
        }
    }

    public void Dispose()
    {
        _socket.Dispose();
        _sendLock.Dispose();
    }

    /// <summary>One request in flight at a time: send, await its answer, back off if told to, repeat until the run ends.</summary>
    private async Task RunSlotAsync(byte[] buffer)
    {
        var pacer = new SlotPacer(_slotIntervalTicks);
        long sequenceId = 0;
        var chunk = 0;
        while (Stopwatch.GetTimestamp() < _measureEnd)
        {
            await pacer.WaitTurnAsync();

            var id = Interlocked.Increment(ref _nextId);
            var mark = default(SequenceMark);
            if (_sequenceChunks is { } perSequence)
            {
                var start = sequenceId == 0;
                if (start)
                {
                    sequenceId = Interlocked.Increment(ref s_nextSequenceId);
                    chunk = 0;
                }

                mark = new SequenceMark(sequenceId, start, perSequence > 0 && chunk == perSequence - 1);
                chunk++;
            }

            var length = _template.Write(buffer, id, mark);
            PendingRequest request;
            await _sendLock.WaitAsync();
            try
            {
                if (_dead)
                {
                    return;
                }

                request = _pending.Add(id);
                await _socket.SendAsync(buffer.AsMemory(0, length), _messageType, endOfMessage: true, CancellationToken.None);
                Interlocked.Increment(ref _sent);
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
            {
                // The receive loop sees the broken connection too, and counts the requests it loses.
                _pending.Remove(id);
                return;
            }
            finally
            {
                _sendLock.Release();
            }

            var result = await request.Task;
            if (result.Lost)
            {
                return;
            }

            if (result.Failed || mark.End)
            {
                sequenceId = 0;
            }

            if (result.RetryAfterMs > 0)
            {
                // The server asked this slot to back off; don't send again sooner, nor after the run ends.
                var resumeAt = Stopwatch.GetTimestamp() + (long)(result.RetryAfterMs / 1000.0 * Stopwatch.Frequency);
                if (resumeAt >= _measureEnd)
                {
                    return;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(result.RetryAfterMs));
            }
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[InitialReceiveBuffer];
        try
        {
            while (true)
            {
                var count = 0;
                ValueWebSocketReceiveResult received;
                do
                {
                    if (count == buffer.Length)
                    {
                        Array.Resize(ref buffer, buffer.Length * 2);
                    }

                    received = await _socket.ReceiveAsync(buffer.AsMemory(count), CancellationToken.None);
                    count += received.Count;
                }
                while (!received.EndOfMessage && received.MessageType != WebSocketMessageType.Close);

                var now = Stopwatch.GetTimestamp();
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    if (!_closing)
                    {
                        Stats.DropReason = string.Create(CultureInfo.InvariantCulture, $"the server closed the connection ({_socket.CloseStatus} {_socket.CloseStatusDescription})");
                    }

                    return;
                }

                if (received.MessageType == WebSocketMessageType.Text)
                {
                    OnFrame(buffer.AsSpan(0, count), [], now);
                    continue;
                }

                var headerLength = count >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(buffer) : uint.MaxValue;
                if (headerLength > (uint)(count - 4))
                {
                    Stats.UnexpectedFrames++;
                    continue;
                }

                OnFrame(buffer.AsSpan(4, (int)headerLength), buffer.AsSpan(4 + (int)headerLength, count - 4 - (int)headerLength), now);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            if (!_closing)
            {
                Stats.DropReason = "the connection broke: " + ex.Message;
            }
        }
        finally
        {
            // No slot may register a request after this; whatever is in flight now will never be answered.
            await _sendLock.WaitAsync();
            _dead = true;
            _sendLock.Release();
            Stats.AddLost(_pending.Drain(), _closing);
        }
    }

    /// <summary>A text frame, or a binary frame's header and the bytes after it (<paramref name="binary"/>).</summary>
    private void OnFrame(ReadOnlySpan<byte> frame, ReadOnlySpan<byte> binary, long now)
    {
        var verify = _verifyEvery > 0 && Stats.Answered % _verifyEvery == 0;
        var match = false;
        var type = FrameType.Other;
        var hasId = false;
        var idValid = false;
        long id = 0;
        string? code = null;
        double retryAfterMs = 0;
        var timing = default(FrameTiming);
        try
        {
            var reader = new Utf8JsonReader(frame);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                Stats.UnexpectedFrames++;
                return;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("type"u8))
                {
                    reader.Read();
                    type = reader.TokenType != JsonTokenType.String ? FrameType.Other
                        : reader.ValueTextEquals("result"u8) ? FrameType.Result
                        : reader.ValueTextEquals("error"u8) ? FrameType.Error
                        : reader.ValueTextEquals("warning"u8) ? FrameType.Warning
                        : reader.ValueTextEquals("event"u8) ? FrameType.Event
                        : FrameType.Other;
                }
                else if (reader.ValueTextEquals("id"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.String)
                    {
                        hasId = true;
                        idValid = reader.ValueIsEscaped
                            ? long.TryParse(reader.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out id)
                            : long.TryParse(reader.ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out id);
                    }
                }
                else if (reader.ValueTextEquals("code"u8))
                {
                    reader.Read();
                    code = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                }
                else if (reader.ValueTextEquals("retry_after_ms"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.Number && reader.TryGetDouble(out var ms) && ms > 0)
                    {
                        retryAfterMs = Math.Min(ms, 60_000);
                    }
                }
                else if (reader.ValueTextEquals("timing"u8))
                {
                    reader.Read();
                    timing = AnswerReader.ReadTiming(ref reader);
                }
                else if (verify && reader.ValueTextEquals("outputs"u8))
                {
                    reader.Read();
                    match = AnswerReader.WebSocketOutputsMatch(ref reader, _payload, binary);
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
        }
        catch (JsonException)
        {
            Stats.UnexpectedFrames++;
            return;
        }

        switch (type)
        {
            case FrameType.Warning:
                ConnectionStats.Increment(Stats.Warnings, code ?? "(no code)");
                return;
            case FrameType.Event:
                // A sequence window's crossing: its request's result follows, and is what is measured.
                return;
            case FrameType.Error when !hasId:
                ConnectionStats.Increment(Stats.ConnectionErrors, code ?? "(no code)");
                return;
            case FrameType.Result or FrameType.Error:
                if (!idValid || !_pending.TryTake(id, out var request))
                {
                    Stats.UnknownOrDuplicate++;
                    return;
                }

                var mismatch = verify && type == FrameType.Result && !Stats.Verify(match);
                Stats.Record(request.SentAt, now, _measureStart, _measureEnd, mismatch ? "mismatch" : type == FrameType.Result ? "result" : code ?? "(no code)", timing);

                if (!request.TrySetResult(new SlotAnswer(Lost: false, type == FrameType.Error ? retryAfterMs : 0, Failed: type == FrameType.Error)))
                {
                    Stats.LateAnswers++;
                }

                return;
            default:
                Stats.UnexpectedFrames++;
                return;
        }
    }

    private enum FrameType
    {
        Other,
        Result,
        Error,
        Warning,
        Event,
    }

}
