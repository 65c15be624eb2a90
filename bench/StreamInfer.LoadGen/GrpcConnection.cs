using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using StreamInfer.Frontend.Grpc.V2;

namespace StreamInfer.LoadGen;

/// <summary>
/// A gRPC client of the run (<c>--protocol grpc</c>, <c>--url http://host:port</c>, HTTP/2 without TLS): one channel,
/// so one HTTP/2 connection, with <c>depth</c> slots each calling <c>inference.GRPCInferenceService/ModelInfer</c>
/// and awaiting the answer. The tensor travels in <c>raw_input_contents</c>; an echo's answer is checked in
/// <c>raw_output_contents</c>. An OK status is a <c>result</c>; a failure counts under the protocol's error code where
/// the server names it (the <c>streaminfer-code</c> trailer, as the grid sends), else its status code's name.
/// </summary>
internal sealed class GrpcConnection : ILoadConnection
{
    /// <summary>The trailer in which the grid names a failed call's protocol error code (e.g. <c>rate_limited</c>).</summary>
    private const string CodeTrailer = "streaminfer-code";

    private readonly ModelInferRequest _request;
    private readonly Payload _payload;
    private readonly int _verifyEvery;
    private readonly int _depth;
    private readonly double _slotIntervalTicks;
    private readonly Metadata _headers;
    private readonly Lock _statsGate = new();
    private GrpcChannel? _channel;
    private GRPCInferenceService.GRPCInferenceServiceClient _client = null!;
    private long _measureStart;
    private long _measureEnd;
    private long _sent;
    private long _answers;
    private Task _slots = Task.CompletedTask;

    public GrpcConnection(string model, Payload payload, int verifyEvery, int depth, TimeSpan slotInterval = default)
    {
        _request = NewRequest(model, payload, verifyEvery > 0);
        _payload = payload;
        _verifyEvery = verifyEvery;
        _depth = depth;
        _slotIntervalTicks = slotInterval.TotalSeconds * Stopwatch.Frequency;
        Stats = new ConnectionStats(Math.Min(Math.Max(depth, 1) * 1024, 1 << 20));
        // Each connection is its own caller, as each WebSocket connection is.
        _headers = new Metadata { { "x-client-id", $"loadgen-{Guid.NewGuid():N}" } };
    }

    public ConnectionStats Stats { get; }

    public long Sent => Interlocked.Read(ref _sent);

    public Task Slots => _slots;

    /// <summary>
    /// The request every call sends: the payload as one input in <c>raw_input_contents</c> (wrapped, not copied);
    /// for an echo, its output asked for by the input's name.
    /// </summary>
    public static ModelInferRequest NewRequest(string model, Payload payload, bool echo)
    {
        var input = new ModelInferRequest.Types.InferInputTensor { Name = payload.Name, Datatype = payload.Type.KServe };
        foreach (var d in payload.Shape)
        {
            input.Shape.Add(d);
        }

        var request = new ModelInferRequest { ModelName = model };
        request.Inputs.Add(input);
        request.RawInputContents.Add(UnsafeByteOperations.UnsafeWrap(payload.Bytes));
        if (echo)
        {
            request.Outputs.Add(new ModelInferRequest.Types.InferRequestedOutputTensor { Name = payload.Name });
        }

        return request;
    }

    /// <summary>
    /// A channel of its own (one HTTP/2 connection) with room for a large tensor each way. Its receive window starts at
    /// 8 MiB: at HTTP/2's 64 KiB default a 0.6 MB answer waits for about ten window updates.
    /// </summary>
    public static GrpcChannel OpenChannel(Uri url) => GrpcChannel.ForAddress(url, new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = false,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            InitialHttp2StreamWindowSize = 8 << 20,
        },
        MaxReceiveMessageSize = 256 << 20,
        MaxSendMessageSize = 256 << 20,
    });

    /// <summary>Whether the output named as the payload came back with exactly its bytes in <c>raw_output_contents</c>.</summary>
    public static bool EchoMatches(ModelInferResponse response, Payload payload)
    {
        for (var i = 0; i < response.Outputs.Count; i++)
        {
            if (string.Equals(response.Outputs[i].Name, payload.Name, StringComparison.OrdinalIgnoreCase))
            {
                return i < response.RawOutputContents.Count && response.RawOutputContents[i].Span.SequenceEqual(payload.Bytes);
            }
        }

        return false;
    }

    /// <summary>The server's timing, where it sends one as response parameters (<c>batch_size</c>, <c>queue_ms</c>, <c>compute_ms</c>).</summary>
    public static FrameTiming ReadTiming(ModelInferResponse response)
    {
        var p = response.Parameters;
        return p.TryGetValue("batch_size", out var batch) && Number(batch) is var b and >= 1
            ? new FrameTiming((int)b, p.TryGetValue("queue_ms", out var q) ? Number(q) : 0, p.TryGetValue("compute_ms", out var c) ? Number(c) : 0)
            : default;

        static double Number(InferParameter value) => value.ParameterChoiceCase switch
        {
            InferParameter.ParameterChoiceOneofCase.Int64Param => value.Int64Param,
            InferParameter.ParameterChoiceOneofCase.DoubleParam => value.DoubleParam,
            InferParameter.ParameterChoiceOneofCase.StringParam when double.TryParse(value.StringParam, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
            _ => 0,
        };
    }

    public async Task ConnectAsync(Uri url, TimeSpan timeout)
    {
        _channel = OpenChannel(url);
        _client = new GRPCInferenceService.GRPCInferenceServiceClient(_channel);
        // Opens the connection and checks the service is there.
        await _client.ServerLiveAsync(new ServerLiveRequest(), _headers, DateTime.UtcNow + timeout);
    }

    public void Start(long measureStart, long measureEnd)
    {
        _measureStart = measureStart;
        _measureEnd = measureEnd;
        _slots = Task.WhenAll(Enumerable.Range(0, _depth).Select(_ => Task.Run(RunSlotAsync)));
    }

    // Each call's deadline (Options.AnswerTimeout) ends an overdue request; it then counts as unanswered.
    public void ExpireOverdue(long now, TimeSpan timeout)
    {
    }

    public int Abandon() => 0;

    public Task CloseAsync() => Task.CompletedTask;

    public void Dispose() => _channel?.Dispose();

    private async Task RunSlotAsync()
    {
        var pacer = new SlotPacer(_slotIntervalTicks);
        while (Stopwatch.GetTimestamp() < _measureEnd)
        {
            await pacer.WaitTurnAsync();

            var sentAt = Stopwatch.GetTimestamp();
            Interlocked.Increment(ref _sent);
            string outcome;
            var timing = default(FrameTiming);
            var retryAfterMs = 0;
            try
            {
                var response = await _client.ModelInferAsync(_request, _headers, DateTime.UtcNow + Options.AnswerTimeout);
                timing = ReadTiming(response);
                outcome = "result";
                if (_verifyEvery > 0 && (Interlocked.Increment(ref _answers) - 1) % _verifyEvery == 0)
                {
                    lock (_statsGate)
                    {
                        outcome = Stats.Verify(EchoMatches(response, _payload)) ? "result" : "mismatch";
                    }
                }
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.DeadlineExceeded or StatusCode.Cancelled
                && Stopwatch.GetElapsedTime(sentAt) >= Options.AnswerTimeout)
            {
                // Never answered within the deadline.
                Interlocked.Increment(ref Stats.Abandoned);
                continue;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable && ex.Status.DebugException is HttpRequestException or IOException)
            {
                // The connection broke.
                Interlocked.Increment(ref Stats.Abandoned);
                continue;
            }
            catch (RpcException ex)
            {
                outcome = ex.Trailers.GetValue(CodeTrailer) ?? ex.StatusCode.ToString();
                retryAfterMs = ex.Trailers.GetValue("retry-after-ms") is { } text && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var ms) ? ms : 0;
            }

            var now = Stopwatch.GetTimestamp();
            lock (_statsGate)
            {
                Stats.Record(sentAt, now, _measureStart, _measureEnd, outcome, timing);
            }

            if (retryAfterMs > 0)
            {
                await Task.Delay(Math.Min(retryAfterMs, 60_000));
            }
        }
    }

    /// <summary>
    /// A failed request's protocol error code and retry hint on a stream, where the server sends them as parameters of
    /// the answer (<c>streaminfer_code</c>, <c>retry_after_ms</c>, as the grid does).
    /// </summary>
    public static (string Code, double RetryAfterMs) StreamError(ModelInferResponse? response)
    {
        var p = response?.Parameters;
        var code = p is not null && p.TryGetValue("streaminfer_code", out var c) && c.StringParam.Length > 0 ? c.StringParam : "error";
        var retry = p is not null && p.TryGetValue("retry_after_ms", out var r) ? r.Int64Param : 0;
        return (code, Math.Clamp(retry, 0, 60_000));
    }
}
