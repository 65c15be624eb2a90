using System.Text.Json;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using StreamInfer.Grains.Hosting;

namespace StreamInfer.Frontend.Auth;

/// <summary>
/// Reads the API keys kept in <see cref="AuthOptions.RedisHash"/> into the <see cref="ApiKeyRing"/>: once at start (so
/// the frontend serves no request before it knows them), then every <see cref="AuthOptions.RedisRefresh"/>. A read that
/// fails keeps the keys last read.
/// </summary>
internal sealed partial class RedisKeySource(ApiKeyRing ring, IOptions<AuthOptions> options, IConfiguration configuration, TimeProvider time, ILogger<RedisKeySource> logger) : IHostedService, IAsyncDisposable
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNameCaseInsensitive = true };

    private readonly CancellationTokenSource _stopping = new();
    private ConnectionMultiplexer? _redis;
    private Task _refreshing = Task.CompletedTask;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        if (string.IsNullOrEmpty(o.RedisHash))
        {
            return;
        }

        var connection = string.IsNullOrEmpty(o.Redis) ? configuration[$"{ClusterEndpointOptions.Section}:{nameof(ClusterEndpointOptions.Redis)}"] : o.Redis;
        if (string.IsNullOrEmpty(connection))
        {
            throw new InvalidOperationException($"{AuthOptions.Section}:RedisHash is set, but neither {AuthOptions.Section}:Redis nor {ClusterEndpointOptions.Section}:Redis names a Redis.");
        }

        var redisOptions = ConfigurationOptions.Parse(connection);
        redisOptions.AbortOnConnectFail = false;
        _redis = await ConnectionMultiplexer.ConnectAsync(redisOptions);
        await ReadAsync(o.RedisHash);
        _refreshing = RefreshAsync(o.RedisHash, o.RedisRefresh, _stopping.Token);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await _refreshing.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    public async ValueTask DisposeAsync()
    {
        _stopping.Dispose();
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
    }

    private async Task RefreshAsync(string hash, TimeSpan every, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(every, time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            await ReadAsync(hash);
        }
    }

    private async Task ReadAsync(string hash)
    {
        HashEntry[] entries;
        try
        {
            entries = await _redis!.GetDatabase().HashGetAllAsync(hash);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            LogReadFailed(logger, ex, hash);
            return;
        }

        var keys = new List<ApiKeyOptions>(entries.Length);
        var validator = new AuthOptionsValidator();
        foreach (var entry in entries)
        {
            ApiKeyOptions? key;
            try
            {
                key = JsonSerializer.Deserialize<ApiKeyOptions>(entry.Value.ToString(), Json);
            }
            catch (JsonException)
            {
                key = null;
            }

            if (key is null)
            {
                LogBadEntry(logger, hash, Prefix(entry.Name), "its value is not a JSON object of a key's fields");
                continue;
            }

            key.Hash = entry.Name.ToString();
            if (validator.Validate(null, new AuthOptions { Keys = [key] }) is { Failed: true } invalid)
            {
                LogBadEntry(logger, hash, Prefix(entry.Name), invalid.FailureMessage);
                continue;
            }

            keys.Add(key);
        }

        ring.ReplaceStored(keys);
    }

    /// <summary>Enough of a hash to find its entry, not enough to stand for it.</summary>
    private static string Prefix(RedisValue name) => name.ToString() is { Length: > 8 } s ? s[..8] + "…" : name.ToString();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Reading the API keys in Redis hash {Hash} failed; the keys last read stay")]
    private static partial void LogReadFailed(ILogger logger, Exception ex, string hash);

    [LoggerMessage(Level = LogLevel.Warning, Message = "API key {Field} in Redis hash {Hash} is left out: {Reason}")]
    private static partial void LogBadEntry(ILogger logger, string hash, string field, string reason);
}
