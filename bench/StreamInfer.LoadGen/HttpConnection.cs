using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace StreamInfer.LoadGen;

/// <summary>
/// An HTTP client of the run: <c>depth</c> slots, each POSTing a request and awaiting the response, over its own
/// keep-alive connections: the <c>infer</c> body to <c>/predict</c> (<c>--url http://host:port/predict</c>), or a
/// KServe v2 request to <c>/v2/models/{model}/infer</c>, as JSON or with the binary tensor data extension (a JSON
/// header of <c>Inference-Header-Content-Length</c> bytes, then the raw tensor bytes; the answer has the same layout).
/// A 200 is a <c>result</c>; anything else counts under the error's <c>code</c> (or the status). Latency: send to the
/// end of the response body.
/// </summary>
internal sealed class HttpConnection : ILoadConnection
{
    private const string HeaderLengthName = "Inference-Header-Content-Length";
    private static readonly MediaTypeHeaderValue Json = new("application/json");
    private static readonly MediaTypeHeaderValue OctetStream = new("application/octet-stream");

    private readonly Protocol _protocol;
    private readonly string _model;
    private readonly RequestTemplate? _template;
    private readonly Payload _payload;
    private readonly int _verifyEvery;
    private readonly byte[]? _binaryBody;
    private readonly string? _binaryHeaderLength;
    private readonly int _depth;
    private readonly double _slotIntervalTicks;
    private readonly HttpClient _http;
    private readonly Lock _statsGate = new();
    private Uri _url = null!;
    private long _measureStart;
    private long _measureEnd;
    private long _sent;
    private long _nextId;
    private long _answers;
    private Task _slots = Task.CompletedTask;

    /// <param name="protocol"><see cref="Protocol.Predict"/>, <see cref="Protocol.KServe"/> or <see cref="Protocol.KServeBinary"/>.</param>
    /// <param name="model">The model, for the KServe path.</param>
    /// <param name="template">The JSON body (predict, kserve).</param>
    /// <param name="payload">The tensor the requests carry, which an echo answer returns.</param>
    /// <param name="verifyEvery">Check every this many answers (and the first) against <paramref name="payload"/>; 0 never.</param>
    /// <param name="depth">Slots (requests in flight).</param>
    /// <param name="slotInterval">Least time between two sends of one slot (paced runs); zero for closed loop.</param>
    public HttpConnection(Protocol protocol, string model, RequestTemplate? template, Payload payload, int verifyEvery, int depth, TimeSpan slotInterval = default)
    {
        _protocol = protocol;
        _model = model;
        _template = template;
        _payload = payload;
        _verifyEvery = verifyEvery;
        _depth = depth;
        _slotIntervalTicks = slotInterval.TotalSeconds * Stopwatch.Frequency;
        if (protocol == Protocol.KServeBinary)
        {
            (_binaryBody, var headerLength) = BinaryBody(payload, verifyEvery > 0);
            _binaryHeaderLength = headerLength.ToString(CultureInfo.InvariantCulture);
        }

        Stats = new ConnectionStats(Math.Min(Math.Max(depth, 1) * 1024, 1 << 20));
        _http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = Math.Max(depth, 1), PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
        {
            Timeout = Options.AnswerTimeout,
        };

        // Each client is its own caller, with its own session (rate limit, backlog), as each WebSocket connection is.
        _http.DefaultRequestHeaders.Add("X-Client-Id", $"loadgen-{Guid.NewGuid():N}");
    }

    public ConnectionStats Stats { get; }

    public long Sent => Interlocked.Read(ref _sent);

    public Task Slots => _slots;

    public async Task ConnectAsync(Uri url, TimeSpan timeout)
    {
        _url = _protocol == Protocol.Predict ? url : new Uri(url, $"/v2/models/{Uri.EscapeDataString(_model)}/infer");
        // Opens the first keep-alive connection and checks the server is there.
        using var cts = new CancellationTokenSource(timeout);
        using var health = await _http.GetAsync(new Uri(url, "/healthz"), cts.Token);
        health.EnsureSuccessStatusCode();
    }

    public void Start(long measureStart, long measureEnd)
    {
        _measureStart = measureStart;
        _measureEnd = measureEnd;
        _slots = Task.WhenAll(Enumerable.Range(0, _depth).Select(_ => Task.Run(RunSlotAsync)));
    }

    // The HTTP client's own timeout (Options.AnswerTimeout) ends an overdue request; it then counts as unanswered.
    public void ExpireOverdue(long now, TimeSpan timeout)
    {
    }

    public int Abandon() => 0;

    public Task CloseAsync() => Task.CompletedTask;

    public void Dispose() => _http.Dispose();

    /// <summary>
    /// The binary extension's body, the same for every request: the JSON header (the input with its
    /// <c>binary_data_size</c>; its echo asked for in binary by name, or every output by <c>binary_data_output</c>),
    /// then the tensor's bytes.
    /// </summary>
    private static (byte[] Body, int HeaderLength) BinaryBody(Payload payload, bool echo)
    {
        var header = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            w.WriteStartArray("inputs");
            w.WriteStartObject();
            w.WriteString("name", payload.Name);
            w.WriteStartArray("shape");
            foreach (var d in payload.Shape)
            {
                w.WriteNumberValue(d);
            }

            w.WriteEndArray();
            w.WriteString("datatype", payload.Type.KServe);
            w.WriteStartObject("parameters");
            w.WriteNumber("binary_data_size", payload.Bytes.Length);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndArray();
            if (echo)
            {
                w.WriteStartArray("outputs");
                w.WriteStartObject();
                w.WriteString("name", payload.Name);
                w.WriteStartObject("parameters");
                w.WriteBoolean("binary_data", true);
                w.WriteEndObject();
                w.WriteEndObject();
                w.WriteEndArray();
            }
            else
            {
                w.WriteStartObject("parameters");
                w.WriteBoolean("binary_data_output", true);
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        var body = new byte[header.WrittenCount + payload.Bytes.Length];
        header.WrittenSpan.CopyTo(body);
        payload.Bytes.CopyTo(body.AsSpan(header.WrittenCount));
        return (body, header.WrittenCount);
    }

    private async Task RunSlotAsync()
    {
        var buffer = _template?.NewBuffer();
        var answer = new byte[64 * 1024];
        var pacer = new SlotPacer(_slotIntervalTicks);
        while (Stopwatch.GetTimestamp() < _measureEnd)
        {
            await pacer.WaitTurnAsync();

            using var request = new HttpRequestMessage(HttpMethod.Post, _url);
            if (_binaryBody is not null)
            {
                request.Content = new ByteArrayContent(_binaryBody);
                request.Content.Headers.ContentType = OctetStream;
                request.Headers.TryAddWithoutValidation(HeaderLengthName, _binaryHeaderLength);
            }
            else
            {
                var length = _template!.Write(buffer, Interlocked.Increment(ref _nextId));
                request.Content = new ByteArrayContent(buffer!, 0, length);
                request.Content.Headers.ContentType = Json;
            }

            var sentAt = Stopwatch.GetTimestamp();
            Interlocked.Increment(ref _sent);
            HttpStatusCode status;
            int count;
            string? headerLength;
            var retryAfterMs = 0;
            try
            {
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                (answer, count) = await ReadBodyAsync(response.Content, answer);
                status = response.StatusCode;
                headerLength = response.Headers.TryGetValues(HeaderLengthName, out var values) ? values.FirstOrDefault() : null;
                if (response.Headers.RetryAfter?.Delta is { } delta)
                {
                    retryAfterMs = (int)delta.TotalMilliseconds;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException)
            {
                // Never answered (timed out, or the connection broke).
                Interlocked.Increment(ref Stats.Abandoned);
                continue;
            }

            var now = Stopwatch.GetTimestamp();
            var outcome = Judge(status, answer.AsSpan(0, count), headerLength, out var timing);
            lock (_statsGate)
            {
                Stats.Record(sentAt, now, _measureStart, _measureEnd, outcome, timing);
            }

            if (retryAfterMs > 0)
            {
                await Task.Delay(retryAfterMs);
            }
        }
    }

    /// <summary>
    /// The answer's outcome: <c>result</c>, <c>mismatch</c> (a checked answer that did not return the sent bytes), or
    /// the error's code. A binary answer's header is read each time (it is small); a JSON answer only when checked.
    /// </summary>
    private string Judge(HttpStatusCode status, ReadOnlySpan<byte> body, string? headerLengthText, out FrameTiming timing)
    {
        timing = default;
        var verify = false;
        if (status == HttpStatusCode.OK && _verifyEvery > 0)
        {
            var n = Interlocked.Increment(ref _answers) - 1;
            verify = n % _verifyEvery == 0;
        }

        var json = body;
        var binary = ReadOnlySpan<byte>.Empty;
        if (headerLengthText is not null)
        {
            if (!int.TryParse(headerLengthText, NumberStyles.None, CultureInfo.InvariantCulture, out var headerLength) || headerLength > body.Length)
            {
                return status == HttpStatusCode.OK ? "bad_binary_answer" : ((int)status).ToString(CultureInfo.InvariantCulture);
            }

            json = body[..headerLength];
            binary = body[headerLength..];
        }

        if (status == HttpStatusCode.OK && !verify && (headerLengthText is null || _protocol == Protocol.Predict))
        {
            return "result";
        }

        var (readTiming, code, match) = AnswerReader.ReadHttpAnswer(json, binary, _payload, verify);
        timing = readTiming;
        if (status != HttpStatusCode.OK)
        {
            return code ?? ((int)status).ToString(CultureInfo.InvariantCulture);
        }

        if (!verify)
        {
            return "result";
        }

        bool matched;
        lock (_statsGate)
        {
            matched = Stats.Verify(match);
        }

        return matched ? "result" : "mismatch";
    }

    /// <summary>Reads the whole body into <paramref name="buffer"/>, growing it as needed; the buffer and the byte count.</summary>
    private static async Task<(byte[] Buffer, int Count)> ReadBodyAsync(HttpContent content, byte[] buffer)
    {
        await using var stream = await content.ReadAsStreamAsync();
        var count = 0;
        while (true)
        {
            if (count == buffer.Length)
            {
                Array.Resize(ref buffer, buffer.Length * 2);
            }

            var read = await stream.ReadAsync(buffer.AsMemory(count));
            if (read == 0)
            {
                return (buffer, count);
            }

            count += read;
        }
    }
}
