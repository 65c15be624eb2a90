using System.Net.WebSockets;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.WebSockets;

/// <summary>Why a connection ends from the server's side: over its frame budget, idle or slow, or not reading.</summary>
internal sealed partial class ClientConnection
{
    private void DropSlowClient(string limit)
    {
        if (!_finished && !_closing.IsCancellationRequested)
        {
            // The client is not reading: drop the connection; its session cancels its work.
            LogSlowClientDropped(_logger, ClientId, limit);
            _closing.Cancel();
        }
    }

    /// <summary>A message over the budget was read and dropped: answered <c>rate_limited</c> (with the message's
    /// <paramref name="id"/> when it could be seen), or, when the connection keeps passing its budget, the connection is
    /// closed (1008); false then.</summary>
    private bool OverBudget(string? id, TimeSpan retryAfter)
    {
        var budget = $"{_options.MaxFramesPerSecond} messages and {_options.MaxBytesPerSecond} bytes a second";
        if (!_budget.Exhausted)
        {
            var ms = (int)Math.Ceiling(retryAfter.TotalMilliseconds);
            _outbox.Send(FrameWriter.Error(id, new InferError(ErrorCode.RateLimited, $"this connection sends more than its {budget}: the message was dropped unread; retry in {ms} ms.", ms)));
            return true;
        }

        LogOverBudget(_logger, ClientId, _options.OverBudgetCloseAfter.TotalSeconds);
        CloseFor(
            "closed over its budget",
            FrameWriter.Error(id, new InferError(ErrorCode.RateLimited, $"this connection sent more than its {budget} for {_options.OverBudgetCloseAfter.TotalSeconds:0.#} s: it is closed.")),
            WebSocketCloseStatus.PolicyViolation,
            "over the frame budget");
        return false;
    }

    /// <summary>Closes the connection from the receive loop: a last error, then the close after what is queued.</summary>
    private void CloseFor(string why, byte[] lastWord, WebSocketCloseStatus status, string reason)
    {
        _closedFor = why;
        _outbox.Send(lastWord);
        if (!_outbox.TryClose(status, reason))
        {
            Abort();
        }
    }

    /// <summary>Idle for <see cref="FrontendOptions.IdleTimeout"/>, or a message unfinished past
    /// <see cref="FrontendOptions.MessageReceiveTimeout"/>: the close goes out after what is queued.</summary>
    private bool CloseUnused(WebSocketCloseStatus status, string reason)
    {
        if (status == WebSocketCloseStatus.NormalClosure)
        {
            _closedFor = "closed idle";
            LogIdle(_logger, ClientId, _options.IdleTimeout.TotalSeconds);
        }
        else
        {
            _closedFor = "closed for a message not completed in time";
            LogSlowMessage(_logger, ClientId, _options.MessageReceiveTimeout.TotalSeconds);
        }

        return _outbox.TryClose(status, reason);
    }
}
