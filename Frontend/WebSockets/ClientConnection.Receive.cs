using System.Net.WebSockets;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>The receive side of a connection: each message read within the frame budget and handed to the client's
/// requests, or dropped and answered.</summary>
internal sealed partial class ClientConnection
{
    /// <summary>
    /// Reads message after message. Each takes its place in the connection's <see cref="FrameBudget"/> as it begins: one
    /// over it is read, dropped unparsed and answered <c>rate_limited</c>, and a connection that stays over it is closed.
    /// Once the connection is closing (<see cref="IdleWatch"/>), nothing more is dispatched.
    /// </summary>
    private async Task ReceiveLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                // The message's type is known from its first fragment, and with it the limit that applies.
                var received = await _reader.ReadFirstAsync(cancellationToken);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    return;
                }

                if (!received.EndOfMessage)
                {
                    _idle.MessageBegan();
                }

                var binary = received.MessageType == WebSocketMessageType.Binary;
                var limit = binary ? _options.MaxBinaryBytes : _options.MaxFrameBytes;
                if (!_budget.TryTake(received.Count, out var retryAfter))
                {
                    var id = binary ? null : _reader.PeekId(received.Count, received.EndOfMessage);
                    if (!await AcceptAsync(await _reader.DiscardRestAsync(received, limit, cancellationToken), limit, cancellationToken))
                    {
                        return;
                    }

                    var open = OverBudget(id, retryAfter);
                    _idle.EndDispatch(active: false);
                    if (!open)
                    {
                        // Read on until the client's close: a socket shut with unread bytes is reset, and the client
                        // would never see why.
                        await _reader.DiscardUntilCloseAsync(IdleWatch.CloseHandshake, cancellationToken);
                        return;
                    }

                    continue;
                }

                if (binary)
                {
                    var (frame, end) = await _reader.ReadBinaryAsync(received, cancellationToken);
                    if (!await AcceptAsync(end, limit, cancellationToken))
                    {
                        frame?.Return();
                        return;
                    }

                    try
                    {
                        if (frame is null)
                        {
                            _outbox.Send(FrameWriter.Error(null, new InferError(ErrorCode.PayloadTooLarge, $"a binary frame may be at most {limit} bytes.")));
                        }
                        else
                        {
                            await _requests.HandleBinaryAsync(frame, cancellationToken);
                        }
                    }
                    finally
                    {
                        _idle.EndDispatch(active: true);
                    }

                    continue;
                }

                var (count, textEnd) = await _reader.ReadTextAsync(received, cancellationToken);
                if (!await AcceptAsync(textEnd, limit, cancellationToken))
                {
                    return;
                }

                try
                {
                    if (textEnd == MessageEnd.OverLimit)
                    {
                        _outbox.Send(FrameWriter.Error(null, new InferError(ErrorCode.PayloadTooLarge, $"a frame may be at most {limit} bytes.")));
                    }
                    else
                    {
                        await _requests.HandleAsync(_reader.Text(count), cancellationToken);
                    }
                }
                finally
                {
                    _idle.EndDispatch(active: true);
                }

                _reader.Shrink();
            }
        }
        finally
        {
            _reader.Dispose();
        }
    }

    /// <summary>
    /// A message has been read (or dropped): its bytes were counted as they came. True when it may be acted on, which
    /// then ends with <see cref="IdleWatch.EndDispatch"/>; false when the loop is to end: the client closed, the message
    /// was endless (closed here, 1009), or the connection is closing (read on until the client's close).
    /// </summary>
    private async Task<bool> AcceptAsync(MessageEnd end, int limit, CancellationToken cancellationToken)
    {
        if (end == MessageEnd.Closed)
        {
            return false;
        }

        if (end == MessageEnd.Endless)
        {
            var past = (long)MessageReader.DiscardMultiple * limit;
            LogEndless(_logger, ClientId, past);
            CloseFor(
                "closed for an endless message",
                FrameWriter.Error(null, new InferError(ErrorCode.PayloadTooLarge, $"a message may be at most {limit} bytes; this one went on past {past}: the connection is closed.")),
                WebSocketCloseStatus.MessageTooBig,
                $"message past {past} bytes");
        }
        else if (_idle.TryBeginDispatch())
        {
            return true;
        }

        await _reader.DiscardUntilCloseAsync(IdleWatch.CloseHandshake, cancellationToken);
        return false;
    }
}
