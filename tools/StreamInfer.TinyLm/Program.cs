using System.Diagnostics;
using System.Globalization;
using StreamInfer.Grains.Models.Decoding;

const string Usage = """
    Writes the built-in tiny-lm decoder (GPT-2 architecture, fixed pseudo-random weights, HF/Optimum ONNX convention)
    into a model repository: OUT/tiny-lm/config.json and OUT/tiny-lm/1/model.onnx. The same options give the same bytes.

    usage:
      StreamInfer.TinyLm --out DIR [--layers 4] [--d-model 128] [--heads 4] [--max-positions 1024] [--max-batch-size 64]

    An existing OUT/tiny-lm is replaced. Exit code 2 on a bad command line.
    """;

if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
{
    Console.WriteLine(Usage);
    return args.Length == 0 ? 2 : 0;
}

var defaults = new TinyLmOptions();
string output;
TinyLmOptions options;
try
{
    var values = ParseFlags(args);
    output = Take(values, "out") ?? throw new FormatException("--out DIR is required.");
    options = new TinyLmOptions
    {
        Layers = TakeInt(values, "layers", defaults.Layers),
        DModel = TakeInt(values, "d-model", defaults.DModel),
        Heads = TakeInt(values, "heads", defaults.Heads),
        MaxPositions = TakeInt(values, "max-positions", defaults.MaxPositions),
        MaxBatchSize = TakeInt(values, "max-batch-size", defaults.MaxBatchSize),
    };
    if (values.Count > 0)
    {
        throw new FormatException($"unknown flag --{values.Keys.First()}.");
    }
}
catch (FormatException ex)
{
    await Console.Error.WriteLineAsync($"error: {ex.Message}\n\n{Usage}");
    return 2;
}

try
{
    var stopwatch = Stopwatch.StartNew();
    var target = Path.Combine(output, TinyLm.Name);

    // Written beside the target and swapped in, so a reader never sees a half-written model.
    var staging = Path.Combine(output, $".{TinyLm.Name}.new-{Guid.NewGuid():N}");
    TinyLm.Write(staging, options);
    if (Directory.Exists(target))
    {
        Directory.Delete(target, recursive: true);
    }

    Directory.Move(staging, target);
    var onnx = new FileInfo(Path.Combine(target, "1", "model.onnx"));
    Console.WriteLine(string.Create(
        CultureInfo.InvariantCulture,
        $"wrote {target}: {options.Layers} layers, d_model {options.DModel}, {options.Heads} heads, {options.MaxPositions} positions, {TinyLm.ParameterCount(options) / 1e6:F2} M parameters, model.onnx {onnx.Length / 1e6:F1} MB, in {stopwatch.Elapsed.TotalMilliseconds:F0} ms"));
    return 0;
}
catch (ArgumentOutOfRangeException ex)
{
    await Console.Error.WriteLineAsync($"error: {ex.Message}");
    return 2;
}

static Dictionary<string, string> ParseFlags(string[] args)
{
    var values = new Dictionary<string, string>(StringComparer.Ordinal);
    for (var i = 0; i < args.Length; i++)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal) || args[i].Length == 2)
        {
            throw new FormatException($"unexpected argument '{args[i]}' (flags look like --name value).");
        }

        var eq = args[i].IndexOf('=', StringComparison.Ordinal);
        var (name, value) = eq > 0
            ? (args[i][2..eq], args[i][(eq + 1)..])
            : (args[i][2..], i + 1 < args.Length ? args[++i] : throw new FormatException($"{args[i]} needs a value."));
        if (!values.TryAdd(name, value))
        {
            throw new FormatException($"--{name} is given twice.");
        }
    }

    return values;
}

static string? Take(Dictionary<string, string> values, string name)
    => values.Remove(name, out var value) ? value : null;

static int TakeInt(Dictionary<string, string> values, string name, int fallback)
{
    var text = Take(values, name);
    if (text is null)
    {
        return fallback;
    }

    return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value)
        ? value
        : throw new FormatException($"--{name} must be a whole number, not '{text}'.");
}
