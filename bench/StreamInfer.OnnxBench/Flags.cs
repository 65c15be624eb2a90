using System.Globalization;

namespace StreamInfer.OnnxBench;

/// <summary><c>--name value</c> (or <c>--name=value</c>) pairs and bare boolean flags; every flag must be used once.</summary>
internal sealed class Flags
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public static Flags Parse(ReadOnlySpan<string> args, IReadOnlyCollection<string> booleans)
    {
        var flags = new Flags();
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
            {
                throw new FormatException($"unexpected argument '{arg}' (flags look like --name value).");
            }

            string name;
            string value;
            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                name = arg[2..eq];
                value = arg[(eq + 1)..];
            }
            else if (booleans.Contains(arg[2..]))
            {
                name = arg[2..];
                value = "true";
            }
            else
            {
                name = arg[2..];
                if (i + 1 >= args.Length)
                {
                    throw new FormatException($"--{name} needs a value.");
                }

                value = args[++i];
            }

            if (!flags._values.TryAdd(name, value))
            {
                throw new FormatException($"--{name} is given twice.");
            }
        }

        return flags;
    }

    public string? Text(string name)
    {
        _used.Add(name);
        return _values.TryGetValue(name, out var value) ? (value.Length > 0 ? value : throw new FormatException($"--{name} must not be empty.")) : null;
    }

    public bool Bool(string name) => Text(name) switch
    {
        null or "false" => false,
        "true" => true,
        var v => throw new FormatException($"--{name} takes no value or true/false; got '{v}'."),
    };

    public int Int(string name, int defaultValue, int min, int max)
    {
        var text = Text(name);
        if (text is null)
        {
            return defaultValue;
        }

        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? n
            : throw new FormatException($"--{name} must be an integer from {min} to {max}; got '{text}'.");
    }

    public double Seconds(string name, double defaultValue, bool allowZero = false)
    {
        var text = Text(name);
        if (text is null)
        {
            return defaultValue;
        }

        return double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var s) && s <= 86_400 && (s > 0 || (allowZero && s == 0))
            ? s
            : throw new FormatException($"--{name} must be a number of seconds{(allowZero ? string.Empty : " above 0")}, at most 86400; got '{text}'.");
    }

    public IReadOnlyList<int> IntList(string name, int[] defaultValue)
    {
        var text = Text(name);
        if (text is null)
        {
            return defaultValue;
        }

        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var values = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out values[i]) || values[i] < 1 || values[i] > 1 << 16)
            {
                throw new FormatException($"--{name} must be positive integers separated by commas, e.g. 1,2,4; got '{text}'.");
            }
        }

        return values;
    }

    /// <summary>Fails on a flag the command does not know.</summary>
    public void EnsureAllUsed()
    {
        foreach (var name in _values.Keys)
        {
            if (!_used.Contains(name))
            {
                throw new FormatException($"unknown flag --{name} (see --help).");
            }
        }
    }
}
