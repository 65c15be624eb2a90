using System.Globalization;

namespace StreamInfer.LoadGen;

/// <summary>The command line: <c>--name value</c> (or <c>--name=value</c>) pairs, plus <c>--help</c>.</summary>
internal sealed class Options
{
    /// <summary>How long after the run ends an unanswered request is given before it counts as lost.</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromSeconds(10);

    /// <summary>How long a slot waits for an answer before it moves on (the request still counts if never answered).</summary>
    public static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(10);

    /// <summary>How long one connection attempt may take.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

    public const int MaxElements = 1 << 24;

    public const string Usage = """
        StreamInfer load generator: N connections, D requests in flight on each, for T seconds.

        usage: StreamInfer.LoadGen [--name value]...

          --url URL                  WebSocket endpoint (default ws://127.0.0.1:8000/ws), or http://HOST:PORT/predict
                                     to POST the same request over HTTP (each connection: DEPTH keep-alive requests);
                                     for kserve, kserve-binary, grpc and grpc-stream: http://HOST:PORT
          --protocol P               ws (JSON text frames; the default for ws:// URLs), ws-binary (binary frames:
                                     length-prefixed JSON header, then the raw tensor bytes), predict (JSON POST /predict;
                                     the default for http:// URLs), kserve (KServe v2 JSON POST /v2/models/MODEL/infer),
                                     kserve-binary (the same with the binary tensor data extension), grpc (KServe v2
                                     gRPC ModelInfer, unary), grpc-stream (ModelStreamInfer: one stream per connection)
          --connections N            connections to open (default 100)
          --depth D                  requests in flight per connection (default 4; 0 holds the connections open, idle)
          --rate R                   pace the whole run at R requests/s (each slot sends at most every slots/R s); 0 = as fast as answered (default)
          --duration T               measured seconds (default 10)
          --warmup W                 seconds run before measuring; not counted (default 2)
          --model NAME               model to call (default echo)
          --shape 1,8                shape of the input tensor (default 1,8); 1,3,224,224 is one 224x224 RGB image
          --dtype T                  its element type: float32 (default), float16, float64, int64, int32, int16, int8,
                                     uint8, bool (KServe names such as FP32 too)
          --input NAME               its name (default x)
          --values V                 pattern (default: 0, 0.5, ... 7.5 repeating, short in JSON) or image (normalized
                                     pseudo-random pixels, as long in JSON as a real image)
          --chunk N                  stream audio-like chunks: input "input" float32 [1,N] (a tone whose loudness changes
                                     from chunk to chunk), plus "sr" int64 scalar (--sample-rate); sets --shape 1,N,
                                     --input input, --values audio (ws, ws-binary, predict, kserve)
          --sample-rate R            the "sr" scalar sent with --chunk (default 16000; 0 sends none)
          --sequences                each slot is one stateful sequence: its first request has "sequence_start": true and
                                     a new "sequence_id", the next ones the same id (one in flight per sequence); after
                                     an error or an overdue answer the slot starts a new sequence (ws and ws-binary).
                                     Real time at 512 samples and 16 kHz: --rate CONNECTIONS*DEPTH/0.032
          --sequence-chunks K        end each sequence after K chunks ("sequence_end": true on the K-th) and start a
                                     new one; 0 (default) keeps one sequence per slot for the whole run
          --verify-every K           check every K-th answer (and each connection's first) returns the sent bytes under
                                     the input's name, as echo does; a mismatch counts as outcome "mismatch" and fails
                                     the run (default 16 for the echo model, else 0 = never)
          --json PATH                also write the results as a JSON object to PATH
          --label TEXT               label for the table header and the JSON
          --connect-concurrency K    connection attempts in flight while connecting (default 50)
          --help                     show this text

        Exit code: 0 normally; 1 if a request was still unanswered 10 s after the run ended,
        an answer came for an unknown or duplicate id, an answer did not return the sent bytes (--verify-every),
        or no connection could be opened; 2 on a bad command line.
        """;

    public Uri Url { get; private set; } = new("ws://127.0.0.1:8000/ws");

    public int Connections { get; private set; } = 100;

    public int Depth { get; private set; } = 4;

    public double DurationSeconds { get; private set; } = 10;

    public double WarmupSeconds { get; private set; } = 2;

    public string Model { get; private set; } = "echo";

    public IReadOnlyList<int> Shape { get; private set; } = [1, 8];

    public Protocol Protocol { get; private set; }

    public DType DType { get; private set; } = DType.All[0];

    public string InputName { get; private set; } = "x";

    public PayloadValues Values { get; private set; }

    /// <summary>Check every this many answers against the sent bytes; 0 never.</summary>
    public int VerifyEvery { get; private set; }

    public string? JsonPath { get; private set; }

    public string? Label { get; private set; }

    public int ConnectConcurrency { get; private set; } = 50;

    /// <summary>Total requests per second to pace at, spread over every slot; 0 sends as fast as answers come (closed loop).</summary>
    public double Rate { get; private set; }

    public bool ShowHelp { get; private set; }

    /// <summary>Samples per audio chunk (<c>--chunk</c>); 0 when the run sends no chunks.</summary>
    public int Chunk { get; private set; }

    /// <summary>The <c>sr</c> scalar sent with each chunk; 0 sends none.</summary>
    public long SampleRate { get; private set; } = 16000;

    /// <summary>Whether each slot is one stateful sequence (<c>--sequences</c>).</summary>
    public bool Sequences { get; private set; }

    /// <summary>Chunks per sequence before it ends and the slot starts another; 0 = one sequence for the whole run.</summary>
    public int SequenceChunks { get; private set; }

    /// <summary>The number of floats in the input tensor (the product of <see cref="Shape"/>).</summary>
    public int ElementCount
    {
        get
        {
            var count = 1;
            foreach (var d in Shape)
            {
                count *= d;
            }

            return count;
        }
    }

    public string ShapeText => "[" + string.Join(",", Shape) + "]";

    /// <summary>Parses the command line.</summary>
    /// <exception cref="FormatException">A flag is unknown, lacks its value, or has a value out of range.</exception>
    public static Options Parse(IReadOnlyList<string> args)
    {
        var options = new Options();
        Protocol? protocol = null;
        int? verifyEvery = null;
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (arg is "--help" or "-h" or "-?")
            {
                options.ShowHelp = true;
                continue;
            }

            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
            {
                throw new FormatException($"unexpected argument '{arg}' (flags look like --name value).");
            }

            string name;
            string value;
            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            if (arg == "--sequences")
            {
                options.Sequences = true;
                continue;
            }

            if (eq > 0)
            {
                name = arg[2..eq];
                value = arg[(eq + 1)..];
            }
            else
            {
                name = arg[2..];
                if (i + 1 >= args.Count)
                {
                    throw new FormatException($"--{name} needs a value.");
                }

                value = args[++i];
            }

            switch (name)
            {
                case "url": options.Url = ParseUrl(value); break;
                case "connections": options.Connections = ParseInt(name, value, 1, 1_000_000); break;
                case "depth": options.Depth = ParseInt(name, value, 0, 100_000); break;
                case "duration": options.DurationSeconds = ParseSeconds(name, value, allowZero: false); break;
                case "warmup": options.WarmupSeconds = ParseSeconds(name, value, allowZero: true); break;
                case "model": options.Model = value.Length > 0 ? value : throw new FormatException("--model must not be empty."); break;
                case "shape": options.Shape = ParseShape(value); break;
                case "json": options.JsonPath = value.Length > 0 ? value : throw new FormatException("--json needs a path."); break;
                case "label": options.Label = value; break;
                case "rate": options.Rate = double.TryParse(value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var rate) && rate >= 0 ? rate : throw new FormatException("--rate must be a number >= 0."); break;
                case "connect-concurrency": options.ConnectConcurrency = ParseInt(name, value, 1, 10_000); break;
                case "protocol": protocol = ParseProtocol(value); break;
                case "dtype": options.DType = DType.Find(value) ?? throw new FormatException($"--dtype must be one of {string.Join(", ", DType.All.Select(d => d.Name))}; got '{value}'."); break;
                case "input": options.InputName = value.Length > 0 ? value : throw new FormatException("--input must not be empty."); break;
                case "values": options.Values = value switch { "pattern" => PayloadValues.Pattern, "image" => PayloadValues.Image, "audio" => PayloadValues.Audio, _ => throw new FormatException($"--values must be pattern, image or audio; got '{value}'.") }; break;
                case "chunk": options.Chunk = ParseInt(name, value, 1, MaxElements); break;
                case "sample-rate": options.SampleRate = ParseInt(name, value, 0, 10_000_000); break;
                case "sequences": options.Sequences = value switch { "true" => true, "false" => false, _ => throw new FormatException($"--sequences takes no value or true/false; got '{value}'.") }; break;
                case "sequence-chunks": options.SequenceChunks = ParseInt(name, value, 0, int.MaxValue); break;
                case "verify-every": verifyEvery = ParseInt(name, value, 0, int.MaxValue); break;
                default: throw new FormatException($"unknown flag --{name} (see --help).");
            }
        }

        var web = options.Url.Scheme is "ws" or "wss";
        options.Protocol = protocol ?? (web ? Protocol.Ws : Protocol.Predict);
        if (web != (options.Protocol is Protocol.Ws or Protocol.WsBinary))
        {
            throw new FormatException($"--protocol {ProtocolName(options.Protocol)} does not go with the URL {options.Url} ({(web ? "ws:// and wss:// are for ws and ws-binary" : "ws and ws-binary need a ws:// or wss:// URL")}).");
        }

        if (options.Chunk > 0)
        {
            options.Shape = [1, options.Chunk];
            options.InputName = "input";
            options.DType = DType.All[0];
            options.Values = PayloadValues.Audio;
            if (options.SampleRate > 0 && options.Protocol is not (Protocol.Ws or Protocol.WsBinary or Protocol.Predict or Protocol.KServe))
            {
                throw new FormatException($"--chunk sends \"sr\" over ws, ws-binary, predict and kserve only; with --protocol {ProtocolName(options.Protocol)} add --sample-rate 0.");
            }
        }

        if (options.Sequences && options.Protocol is not (Protocol.Ws or Protocol.WsBinary))
        {
            throw new FormatException($"--sequences needs --protocol ws or ws-binary (one ordered connection per client); got {ProtocolName(options.Protocol)}.");
        }

        if (options.SequenceChunks > 0 && !options.Sequences)
        {
            throw new FormatException("--sequence-chunks needs --sequences.");
        }

        options.VerifyEvery = verifyEvery ?? (string.Equals(options.Model, "echo", StringComparison.Ordinal) ? 16 : 0);
        return options;
    }

    public static string ProtocolName(Protocol protocol) => protocol switch
    {
        Protocol.Ws => "ws",
        Protocol.WsBinary => "ws-binary",
        Protocol.Predict => "predict",
        Protocol.KServe => "kserve",
        Protocol.KServeBinary => "kserve-binary",
        Protocol.Grpc => "grpc",
        _ => "grpc-stream",
    };

    private static Protocol ParseProtocol(string value)
    {
        foreach (var p in Enum.GetValues<Protocol>())
        {
            if (ProtocolName(p) == value)
            {
                return p;
            }
        }

        throw new FormatException($"--protocol must be ws, ws-binary, predict, kserve, kserve-binary, grpc or grpc-stream; got '{value}'.");
    }

    private static Uri ParseUrl(string value)
    {
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme is not ("ws" or "wss" or "http" or "https"))
        {
            throw new FormatException($"--url must be an absolute ws://, wss://, http:// or https:// address; got '{value}'.");
        }

        return uri;
    }

    private static int ParseInt(string name, string value, int min, int max)
    {
        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < min || n > max)
        {
            throw new FormatException($"--{name} must be an integer from {min} to {max}; got '{value}'.");
        }

        return n;
    }

    private static double ParseSeconds(string name, string value, bool allowZero)
    {
        if (!double.TryParse(value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var s)
            || double.IsNaN(s) || s > 86_400 || s < 0 || (!allowZero && s == 0))
        {
            throw new FormatException($"--{name} must be a number of seconds{(allowZero ? string.Empty : " above 0")}, at most 86400; got '{value}'.");
        }

        return s;
    }

    private static int[] ParseShape(string value)
    {
        var parts = value.Trim('[', ']', ' ').Split(',', StringSplitOptions.TrimEntries);
        var shape = new int[parts.Length];
        long count = 1;
        for (var i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out shape[i]) || shape[i] < 1)
            {
                throw new FormatException($"--shape must be positive integers separated by commas, e.g. 1,8; got '{value}'.");
            }

            count *= shape[i];
            if (count > MaxElements)
            {
                throw new FormatException($"--shape {value} has more than {MaxElements} elements.");
            }
        }

        return shape;
    }
}

/// <summary>What the requests travel as.</summary>
internal enum Protocol
{
    /// <summary>JSON <c>infer</c> text frames on <c>/ws</c>.</summary>
    Ws,

    /// <summary>Binary frames on <c>/ws</c>: a 4-byte little-endian header length, the JSON header, the raw tensor bytes.</summary>
    WsBinary,

    /// <summary>The JSON <c>infer</c> body POSTed to <c>/predict</c>.</summary>
    Predict,

    /// <summary>KServe v2 JSON POSTed to <c>/v2/models/{model}/infer</c>.</summary>
    KServe,

    /// <summary>KServe v2 with the binary tensor data extension.</summary>
    KServeBinary,

    /// <summary>KServe v2 gRPC <c>ModelInfer</c> with <c>raw_input_contents</c>.</summary>
    Grpc,

    /// <summary>KServe v2 gRPC <c>ModelStreamInfer</c>: one stream per connection, requests matched by id.</summary>
    GrpcStream,
}
