using StreamInfer.LoadGen;

Options options;
try
{
    options = Options.Parse(args);
}
catch (FormatException ex)
{
    Console.Error.WriteLine("error: " + ex.Message);
    Console.Error.WriteLine();
    Console.Error.WriteLine(Options.Usage);
    return 2;
}

if (options.ShowHelp)
{
    Console.WriteLine(Options.Usage);
    return 0;
}

var report = await LoadRun.RunAsync(options, Console.Error);
Console.WriteLine();
Console.Write(report.ToTable());
// Under bench/suite.sh every run leaves its JSON (with its per-second series) in the scenario's folder.
var jsonPath = options.JsonPath
    ?? (Environment.GetEnvironmentVariable("STREAMINFER_BENCH_OUT") is { Length: > 0 } folder
        ? Path.Combine(folder, $"loadgen-{DateTime.UtcNow:HHmmss.fff}-{Environment.ProcessId}.json")
        : null);
if (jsonPath is { } path)
{
    report.WriteJson(path);
    Console.Error.WriteLine("wrote " + path);
}

if (report.Failed)
{
    Console.Error.WriteLine(report.ConnectionsOpened == 0
        ? "FAILED: no connection could be opened."
        : $"FAILED: {report.Unanswered} unanswered, {report.UnknownOrDuplicate} unknown/duplicate answers, {report.Mismatches} answers without the sent bytes.");
    return 1;
}

return 0;
