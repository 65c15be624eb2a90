namespace StreamInfer.Frontend.WebSockets;

/// <summary>A connection's log lines.</summary>
internal sealed partial class ClientConnection
{
    [LoggerMessage(Level = LogLevel.Debug, Message = "Client {ClientId} connected")]
    private static partial void LogOpened(ILogger logger, string clientId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Client {ClientId} {How} after {Seconds:F1} s and {Requests} requests")]
    private static partial void LogClosed(ILogger logger, string clientId, double seconds, long requests, string how);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId} closed: over its frame budget for {Seconds} s")]
    private static partial void LogOverBudget(ILogger logger, string clientId, double seconds);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client {ClientId} closed: idle for {Seconds} s")]
    private static partial void LogIdle(ILogger logger, string clientId, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId} closed: a message not completed in {Seconds} s")]
    private static partial void LogSlowMessage(ILogger logger, string clientId, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId} closed: a message dropped for its size went on past {Bytes} bytes")]
    private static partial void LogEndless(ILogger logger, string clientId, long bytes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId} dropped: its send queue holds {Limit} unread")]
    private static partial void LogSlowClientDropped(ILogger logger, string clientId, string limit);
}
