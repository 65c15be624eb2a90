using System.Globalization;
using StreamInfer.Grains.Models.Stateful;
using StreamInfer.OnnxBench;

const string Usage = """
    StreamInfer ONNX benchmark: the test model, and bare ONNX Runtime's throughput on it (the grid's ceiling).

    usage:
      StreamInfer.OnnxBench generate --out DIR [--name mlp] [--input 256] [--hidden 512] [--output 64] [--max-batch-size 32]
          writes a model repository: DIR/NAME/config.json and DIR/NAME/1/model.onnx, an MLP
          x float32 [batch, input] -> MatMul -> Add bias -> Relu -> MatMul -> Relu -> MatMul -> y float32 [batch, output]
          with fixed pseudo-random weights (the same bytes every time)

      StreamInfer.OnnxBench generate-image --out DIR [--name resnet] [--size 224] [--max-batch-size 32] [--pixels float32|uint8]
          writes a small ResNet in the same layout: image float32 [batch, 3, size, size] -> 7x7/2 conv stem, max pool ->
          residual blocks (Conv+Relu+Conv+Add) at 32, 64, 128 channels -> global average pool -> Gemm -> logits
          float32 [batch, 1000], fixed pseudo-random weights

      StreamInfer.OnnxBench bare --model PATH [--seconds 5] [--warmup 1] [--batch-sizes 1,2,4,8,16,32]
                                 [--threads N] [--spinning] [--json PATH]
          runs the model (a .onnx file, a model folder with 1/model.onnx, or a repository with mlp/1/model.onnx) on
          one thread back to back at each batch size, with the grid's CPU session options (ORT_ENABLE_ALL, sequential,
          inter-op 1, intra-op = --threads, default every core; spinning off unless --spinning), and prints rows/s and
          ms per batch; --seconds is per batch size

      StreamInfer.OnnxBench decode [--sequences 64] [--prompt-tokens 16] [--max-tokens 128] [--seconds 5] [--warmup 1]
                                   [--threads N] [--spinning] [--cuda ID]
          the bare decoder engine on the built-in tiny-lm (written to a temporary repository), the grid's session
          options: rounds of --sequences sequences prefilled in one step, then decoded together step by step (greedy)
          until all finish; prints one line: generated tokens/s, ms per decode step (mean, p50, p99), prefill ms;
          --cuda ID runs on that GPU with the CUDA execution provider (as the grid does), exit code 1 if it cannot start

      StreamInfer.OnnxBench decode-grid --url ws://HOST:PORT/ws|http://HOST:PORT/v1/completions [--model tiny-lm] [--connections 64] [--prompt-tokens 16]
                                        [--max-tokens 128] [--seconds 10] [--warmup 2]
          the same workload through the grid: --connections WebSocket connections, one prompt request in flight on
          each (closed loop); prints one line: generated tokens/s, time to first token and inter-token latency
          (p50, p99, ms), errors; exit code 1 on any error

      StreamInfer.OnnxBench padding [--threads N] [--seconds-per-point 0.2] [--short 16]
          where cutting a padded batch pays (docs/decisions.md D13): on a per-position MLP with one dynamic axis, short
          requests of --short positions with one long one, run padded together and split in two runs (bare ONNX Runtime,
          the grid's CPU session options); prints a table of waste bytes and share, padded and split ms

      StreamInfer.OnnxBench generate-vad --out DIR [--max-batch-size 64] [--ballast 0]
          writes the built-in stateful vad-lite (silero VAD v5's signature) as DIR/vad-lite, as the grid writes it at
          start; --ballast N adds 128*N multiply-adds per chunk that change no value (4096: half a million, the order of silero VAD v5's)

      StreamInfer.OnnxBench sequences [--batch-sizes 1,8,64,256] [--pool N] [--chunk 512] [--sample-rate 16000]
                                      [--seconds 5] [--warmup 1] [--threads N] [--spinning] [--model PATH]
          bare ONNX Runtime serving stateful sequences: a pool of sequences (--pool, at least the batch size), each
          batch gathering B sequences' chunks and states (state [2, B, 128], batch on axis 1), running, and scattering
          stateN back, on one thread with the grid's session options; prints chunks/s, ms per batch (the whole loop,
          p50, p99) and Run's own ms. The model is vad-lite (checked first against its C# reference) unless --model
          names a file with silero VAD v5's signature

    Progress goes to stderr, the table to stdout. Exit code 2 on a bad command line.
    """;

if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
{
    Console.WriteLine(Usage);
    return args.Length == 0 ? 2 : 0;
}

try
{
    var flags = Flags.Parse(args.AsSpan(1), booleans: ["spinning"]);
    switch (args[0])
    {
        case "generate":
        {
            var output = flags.Text("out") ?? throw new FormatException("generate needs --out DIR.");
            var name = flags.Text("name") ?? MlpModel.DefaultName;
            var inputWidth = flags.Int("input", MlpModel.DefaultInput, 1, 1 << 16);
            var hidden = flags.Int("hidden", MlpModel.DefaultHidden, 1, 1 << 16);
            var outputWidth = flags.Int("output", MlpModel.DefaultOutput, 1, 1 << 16);
            var maxBatch = flags.Int("max-batch-size", MlpModel.DefaultMaxBatchSize, 1, 4096);
            flags.EnsureAllUsed();
            var path = MlpModel.Write(output, name, inputWidth, hidden, outputWidth, maxBatch);
            var macs = MlpModel.MultiplyAddsPerRow(inputWidth, hidden, outputWidth);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {path}: {name}, x [batch,{inputWidth}] -> {hidden} -> {hidden} -> y [batch,{outputWidth}], {macs / 1e6:F2} M multiply-adds per row, max_batch_size {maxBatch}"));
            return 0;
        }

        case "generate-image":
        {
            var output = flags.Text("out") ?? throw new FormatException("generate-image needs --out DIR.");
            var name = flags.Text("name") ?? ResNetModel.DefaultName;
            var size = flags.Int("size", ResNetModel.DefaultSize, 32, 1024);
            var maxBatch = flags.Int("max-batch-size", ResNetModel.DefaultMaxBatchSize, 1, 4096);
            var pixels = flags.Text("pixels") ?? "float32";
            if (pixels is not ("float32" or "uint8"))
            {
                throw new FormatException($"--pixels must be float32 or uint8; got '{pixels}'.");
            }

            flags.EnsureAllUsed();
            var path = ResNetModel.Write(output, name, size, maxBatch, uint8Pixels: pixels == "uint8");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {path}: {name}, a small ResNet, image {pixels} [batch,3,{size},{size}] -> logits [batch,{ResNetModel.Classes}], {ResNetModel.MultiplyAddsPerImage(size) / 1e6:F0} M multiply-adds per image, max_batch_size {maxBatch}"));
            return 0;
        }

        case "bare":
        {
            var model = ResolveModel(flags.Text("model") ?? throw new FormatException("bare needs --model PATH."));
            var bench = new BareBench
            {
                ModelPath = model,
                Seconds = flags.Seconds("seconds", 5),
                WarmupSeconds = flags.Seconds("warmup", 1, allowZero: true),
                BatchSizes = flags.IntList("batch-sizes", [1, 2, 4, 8, 16, 32]),
                Threads = flags.Int("threads", Environment.ProcessorCount, 1, 1024),
                Spinning = flags.Bool("spinning"),
            };
            var json = flags.Text("json");
            flags.EnsureAllUsed();
            var results = bench.Run(Console.Error);
            Console.WriteLine();
            Console.Write(bench.ToTable(results));
            if (json is not null)
            {
                bench.WriteJson(json, results);
                Console.Error.WriteLine("wrote " + json);
            }

            return 0;
        }

        case "decode":
        {
            var bench = new DecodeBench
            {
                Sequences = flags.Int("sequences", 64, 1, 4096),
                PromptTokens = flags.Int("prompt-tokens", 16, 1, 512),
                MaxTokens = flags.Int("max-tokens", 128, 1, 512),
                Seconds = flags.Seconds("seconds", 5),
                WarmupSeconds = flags.Seconds("warmup", 1, allowZero: true),
                Threads = flags.Int("threads", Environment.ProcessorCount, 1, 1024),
                Spinning = flags.Bool("spinning"),
                Cuda = flags.Text("cuda") is not null ? flags.Int("cuda", 0, 0, 64) : null,
            };
            flags.EnsureAllUsed();
            return bench.Run(Console.Out, Console.Error);
        }

        case "decode-grid":
        {
            var client = new DecodeGridClient
            {
                Url = new Uri(flags.Text("url") ?? throw new FormatException("decode-grid needs --url ws://HOST:PORT/ws (or http://HOST:PORT/v1/completions).")),
                Model = flags.Text("model") ?? "tiny-lm",
                Connections = flags.Int("connections", 64, 1, 4096),
                PromptTokens = flags.Int("prompt-tokens", 16, 1, 512),
                MaxTokens = flags.Int("max-tokens", 128, 1, 512),
                Seconds = flags.Seconds("seconds", 10),
                WarmupSeconds = flags.Seconds("warmup", 2, allowZero: true),
            };
            flags.EnsureAllUsed();
            return await client.RunAsync(Console.Out, Console.Error);
        }

        case "generate-vad":
        {
            var output = flags.Text("out") ?? throw new FormatException("generate-vad needs --out DIR.");
            var maxBatch = flags.Int("max-batch-size", VadLite.DefaultMaxBatchSize, 1, 4096);
            var ballast = flags.Int("ballast", 0, 0, 1 << 16);
            flags.EnsureAllUsed();
            var folder = Path.Combine(output, VadLite.Name);
            VadLite.Write(folder, maxBatch, ballast);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {folder}: vad-lite, input [batch,samples], state [2,batch,128], sr -> output [batch,1], stateN [2,batch,128], ballast {VadLite.StateWidth * ballast / 1e6:F2} M multiply-adds per chunk, max_batch_size {maxBatch}"));
            return 0;
        }

        case "sequences":
        {
            var bench = new SequencesBench
            {
                ModelPath = flags.Text("model") is { } m ? ResolveModel(m) : null,
                BatchSizes = flags.IntList("batch-sizes", [1, 8, 64, 256]),
                PoolSize = flags.Int("pool", 0, 0, 1 << 20),
                ChunkSamples = flags.Int("chunk", VadLite.ChunkSamples, 1, 1 << 20),
                SampleRate = flags.Int("sample-rate", (int)VadLite.ReferenceSampleRate, 1, 1_000_000),
                Seconds = flags.Seconds("seconds", 5),
                WarmupSeconds = flags.Seconds("warmup", 1, allowZero: true),
                Threads = flags.Int("threads", Environment.ProcessorCount, 1, 1024),
                Spinning = flags.Bool("spinning"),
            };
            flags.EnsureAllUsed();
            var results = bench.Run(Console.Error);
            Console.WriteLine();
            Console.Write(bench.ToTable(results));
            return 0;
        }

        case "padding":
        {
            var bench = new PaddingBench
            {
                Threads = flags.Int("threads", Environment.ProcessorCount, 1, 1024),
                SecondsPerPoint = flags.Seconds("seconds-per-point", 0.2),
                Short = flags.Int("short", 16, 1, 4096),
            };
            flags.EnsureAllUsed();
            return bench.Run(Console.Out);
        }

        default:
            throw new FormatException($"unknown command '{args[0]}' (generate, generate-image, generate-vad, bare, sequences, decode, decode-grid or padding).");
    }
}
catch (FormatException ex)
{
    Console.Error.WriteLine("error: " + ex.Message);
    Console.Error.WriteLine();
    Console.Error.WriteLine(Usage);
    return 2;
}

// A .onnx file as is; a model folder's 1/model.onnx; a repository's mlp/1/model.onnx.
static string ResolveModel(string path)
{
    if (File.Exists(path))
    {
        return path;
    }

    foreach (var candidate in new[] { Path.Combine(path, "1", "model.onnx"), Path.Combine(path, MlpModel.DefaultName, "1", "model.onnx") })
    {
        if (File.Exists(candidate))
        {
            return candidate;
        }
    }

    throw new FormatException($"--model {path}: no such file, nor 1/model.onnx or {MlpModel.DefaultName}/1/model.onnx under it.");
}
