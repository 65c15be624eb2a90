using System.Globalization;
using System.Text.Json;

// Latency over time, one PNG per scenario: for each load-generator JSON (StreamInfer.LoadGen --json), its p50 and p99
// per second of the measured window, labelled with the run's label. With --answers: the answers that arrived in each
// second instead (results solid, errors dashed), and --mark S draws a vertical line at second S (an event such as a
// silo's death).
// usage: StreamInfer.Plot [--answers] [--mark S] OUT.png "title" run1.json [run2.json ...]
var answers = false;
double? mark = null;
while (args.Length > 0 && args[0].StartsWith("--", StringComparison.Ordinal))
{
    if (args[0] == "--answers")
    {
        answers = true;
        args = args[1..];
    }
    else if (args[0] == "--mark" && args.Length > 1 && double.TryParse(args[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var at))
    {
        mark = at;
        args = args[2..];
    }
    else
    {
        Console.Error.WriteLine($"unknown option {args[0]}");
        return 2;
    }
}

if (args.Length < 3)
{
    Console.Error.WriteLine("usage: StreamInfer.Plot [--answers] [--mark S] OUT.png TITLE RUN.json [RUN.json ...]");
    return 2;
}

var plot = new ScottPlot.Plot();
var palette = new ScottPlot.Palettes.Category10();
var index = 0;
var points = 0;
foreach (var path in args.Skip(2))
{
    using var json = JsonDocument.Parse(File.ReadAllText(path));
    var root = json.RootElement;
    var label = root.TryGetProperty("label", out var l) && l.ValueKind == JsonValueKind.String
        ? l.GetString()!
        : string.Create(CultureInfo.InvariantCulture, $"{root.GetProperty("model").GetString()} on {new Uri(root.GetProperty("url").GetString()!).Port}, {root.GetProperty("connections").GetInt32()}x{root.GetProperty("depth").GetInt32()}{(root.GetProperty("rate").GetDouble() > 0 ? $" at {root.GetProperty("rate").GetDouble():F0}/s" : "")}");
    var seconds = new List<double>();
    var p50 = new List<double>();
    var p99 = new List<double>();
    foreach (var point in root.GetProperty("series").EnumerateArray())
    {
        if (answers)
        {
            seconds.Add(point.GetProperty("second").GetInt32() + 0.5);
            p50.Add(point.GetProperty("results_ended").GetInt32());
            p99.Add(point.GetProperty("errors_ended").GetInt32());
            continue;
        }

        if (point.GetProperty("requests").GetInt32() == 0)
        {
            continue;
        }

        seconds.Add(point.GetProperty("second").GetInt32() + 0.5);
        p50.Add(point.GetProperty("p50_ms").GetDouble());
        p99.Add(point.GetProperty("p99_ms").GetDouble());
    }

    points += seconds.Count;
    var color = palette.GetColor(index++);
    var median = plot.Add.Scatter(seconds.ToArray(), p50.ToArray(), color);
    median.LegendText = label;
    // The p99 line takes its run's colour, dashed, without a legend entry of its own.
    var tail = plot.Add.Scatter(seconds.ToArray(), p99.ToArray(), color);
    tail.LinePattern = ScottPlot.LinePattern.Dashed;
}

if (points == 0)
{
    // Runs that sent no requests (idle connections): there is no latency to draw.
    Console.Error.WriteLine($"no latency samples in {index} runs; no plot written");
    return 0;
}

if (mark is { } x)
{
    plot.Add.VerticalLine(x, 2, ScottPlot.Colors.Black, ScottPlot.LinePattern.Dotted);
}

plot.Title(args[1]);
plot.XLabel("second of the measured window");
plot.YLabel(answers ? "answers per second: results solid, errors dashed" : "latency ms: p50 solid, p99 dashed");
plot.Axes.AutoScale();
plot.Axes.SetLimitsY(0, plot.Axes.GetLimits().Top * 1.05);
plot.ShowLegend(ScottPlot.Edge.Bottom);
// The legend sits below the plot, one line per run.
plot.Legend.Orientation = ScottPlot.Orientation.Vertical;
plot.SavePng(args[0], 1200, 500 + (22 * index));
Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {args[0]} ({index} runs)"));
return 0;
