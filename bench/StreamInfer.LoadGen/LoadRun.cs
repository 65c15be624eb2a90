using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace StreamInfer.LoadGen;

/// <summary>One run: connect, warm up, measure, wait out the grace period, close, report.</summary>
internal static class LoadRun
{
    public static async Task<Report> RunAsync(Options options, TextWriter log)
    {
        var payload = new Payload(options.InputName, options.DType, options.Shape, options.Values);
        Payload[] extras = options.Chunk > 0 && options.SampleRate > 0 ? [Payload.Int64Scalar("sr", options.SampleRate)] : [];
        var template = options.Protocol switch
        {
            Protocol.Ws or Protocol.Predict or Protocol.KServe => RequestTemplate.ForJson(options.Protocol, options.Model, payload, extras, options.Sequences),
            Protocol.WsBinary => RequestTemplate.ForBinaryFrame(options.Model, payload, extras, options.Sequences),
            _ => null,
        };
        var connectErrors = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);

        log.WriteLine(Invariant($"connecting {options.Connections} to {options.Url} ({options.ConnectConcurrency} at a time)..."));
        var connectClock = Stopwatch.StartNew();
        ILoadConnection?[] attempts;
        using (var gate = new SemaphoreSlim(options.ConnectConcurrency, options.ConnectConcurrency))
        {
            attempts = await Task.WhenAll(Enumerable.Range(0, options.Connections).Select(async _ =>
            {
                await gate.WaitAsync();
                var interval = options.Rate > 0 ? TimeSpan.FromSeconds(options.Connections * options.Depth / options.Rate) : TimeSpan.Zero;
                ILoadConnection connection = options.Protocol switch
                {
                    Protocol.Ws or Protocol.WsBinary => new Connection(template!, options.Protocol == Protocol.WsBinary, payload, options.VerifyEvery, options.Depth, interval, options.Sequences ? options.SequenceChunks : null),
                    Protocol.Predict or Protocol.KServe or Protocol.KServeBinary => new HttpConnection(options.Protocol, options.Model, template, payload, options.VerifyEvery, options.Depth, interval),
                    Protocol.Grpc => new GrpcConnection(options.Model, payload, options.VerifyEvery, options.Depth, interval),
                    _ => new GrpcStreamConnection(options.Model, payload, options.VerifyEvery, options.Depth, interval),
                };
                try
                {
                    await connection.ConnectAsync(options.Url, Options.ConnectTimeout);
                    return connection;
                }
                catch (Exception ex)
                {
                    connectErrors.AddOrUpdate(ex.GetBaseException().Message, 1, (_, n) => n + 1);
                    connection.Dispose();
                    return null;
                }
                finally
                {
                    gate.Release();
                }
            }));
        }

        var connectSeconds = connectClock.Elapsed.TotalSeconds;
        var open = attempts.OfType<ILoadConnection>().ToArray();
        try
        {
            log.WriteLine(Invariant($"connected {open.Length}, failed {options.Connections - open.Length}, in {connectSeconds:F2} s"));
            if (open.Length > 0)
            {
                await DriveAsync(open, options, log);
            }

            return Report.Build(
                options,
                [.. open.Select(c => (c.Stats, c.Sent))],
                options.Connections - open.Length,
                connectErrors,
                connectSeconds);
        }
        finally
        {
            foreach (var connection in open)
            {
                connection.Dispose();
            }
        }
    }

    private static async Task DriveAsync(ILoadConnection[] open, Options options, TextWriter log)
    {
        var start = Stopwatch.GetTimestamp();
        var measureStart = start + ToTicks(options.WarmupSeconds);
        var measureEnd = measureStart + ToTicks(options.DurationSeconds);
        foreach (var connection in open)
        {
            connection.Start(measureStart, measureEnd);
        }

        log.WriteLine(Invariant($"warming up {options.WarmupSeconds} s, then measuring {options.DurationSeconds} s..."));
        var slots = Task.WhenAll(open.Select(c => c.Slots));
        using var stopWatchdog = new CancellationTokenSource();
        var watchdog = WatchdogAsync(open, stopWatchdog.Token);
        var untilEnd = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), measureEnd);
        if (untilEnd > TimeSpan.Zero)
        {
            // With depth 0 there are no slots: the connections are only held, idle, for the whole run.
            await (options.Depth == 0 ? Task.Delay(untilEnd) : Task.WhenAny(slots, Task.Delay(untilEnd)));
        }

        // Every slot stops sending at the end; each waits for its last answer, for at most the grace period.
        var untilGraceEnds = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), measureEnd + ToTicks(Options.Grace.TotalSeconds));
        if (!slots.IsCompleted && untilGraceEnds > TimeSpan.Zero)
        {
            log.WriteLine("run ended; waiting for the last answers...");
            await Task.WhenAny(slots, Task.Delay(untilGraceEnds));
        }

        await stopWatchdog.CancelAsync();
        await watchdog;
        var abandoned = open.Sum(c => (long)c.Abandon());
        if (abandoned > 0)
        {
            log.WriteLine(Invariant($"{abandoned} requests still unanswered {Options.Grace.TotalSeconds} s after the run ended"));
        }

        // Closing aborts a connection whose send is stuck (a server that stopped reading), which ends that slot too.
        await Task.WhenAll(open.Select(c => c.CloseAsync()));
        await slots;
    }

    /// <summary>Once a second, lets slots whose answer is overdue move on, so a lost answer does not stall a slot for the rest of the run.</summary>
    private static async Task WatchdogAsync(ILoadConnection[] open, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                var now = Stopwatch.GetTimestamp();
                foreach (var connection in open)
                {
                    connection.ExpireOverdue(now, Options.AnswerTimeout);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The run is over.
        }
    }

    private static long ToTicks(double seconds) => (long)(seconds * Stopwatch.Frequency);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
