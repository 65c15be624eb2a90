using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using StreamInfer;

// Where a cluster's work is: for each active silo, the client sessions it hosts and its batcher's counters for one
// model on one device (batches and requests run so far, requests queued). An Orleans client that finds the silos in
// Redis, as a frontend does; it reads, and activates nothing but a silo's batcher when that one is not active yet.
// Usage: StreamInfer.ClusterProbe --redis HOST:PORT --cluster-id ID [--service-id streaminfer] [--model echo] [--device cpu0]
// Prints one line per silo: "silo-1 sessions=16 batches=410 items=6560 queued=31".
var settings = new Dictionary<string, string>(StringComparer.Ordinal)
{
    ["redis"] = "127.0.0.1:6390",
    ["cluster-id"] = "streaminfer-local",
    ["service-id"] = "streaminfer",
    ["model"] = "echo",
    ["device"] = "cpu0",
};
for (var i = 0; i < args.Length; i++)
{
    var name = args[i].StartsWith("--", StringComparison.Ordinal) ? args[i][2..] : string.Empty;
    if (!settings.ContainsKey(name) || i + 1 >= args.Length)
    {
        Console.Error.WriteLine($"usage: StreamInfer.ClusterProbe [--{string.Join(" V] [--", settings.Keys)} V] (bad argument '{args[i]}')");
        return 2;
    }

    settings[name] = args[++i];
}

var builder = Host.CreateApplicationBuilder();
builder.Logging.ClearProviders();
builder.UseOrleansClient(client =>
{
    client.Configure<ClusterOptions>(o =>
    {
        o.ClusterId = settings["cluster-id"];
        o.ServiceId = settings["service-id"];
    });
    client.UseRedisClustering(settings["redis"]);
});
using var host = builder.Build();
using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
await host.StartAsync(timeout.Token);
var grains = host.Services.GetRequiredService<IClusterClient>();
var management = grains.GetGrain<IManagementGrain>(0);

var silos = (await management.GetDetailedHosts(onlyActive: true)).OrderBy(s => s.SiloName, StringComparer.Ordinal).ToList();
var sessionType = "StreamInfer.Grains.Sessions.ClientSessionGrain";
var sessions = (await management.GetSimpleGrainStatistics())
    .Where(s => s.GrainType.StartsWith(sessionType + ",", StringComparison.Ordinal) || s.GrainType == sessionType)
    .GroupBy(s => s.SiloAddress)
    .ToDictionary(g => g.Key, g => g.Sum(s => s.ActivationCount));

foreach (var silo in silos)
{
    // The batcher key names the silo as SiloNames.ForKey does: '/' (the key separator) replaced.
    var key = new BatcherKey(settings["model"], silo.SiloName.Replace('/', '_'), settings["device"]);
    var status = await grains.GetGrain<IBatcherGrain>(key.ToString()).GetStatusAsync().WaitAsync(timeout.Token);
    Console.WriteLine(string.Create(
        CultureInfo.InvariantCulture,
        $"{silo.SiloName} sessions={sessions.GetValueOrDefault(silo.SiloAddress)} batches={status.BatchesRun} items={status.ItemsRun} queued={status.Queued}"));
}

await host.StopAsync(CancellationToken.None);
return 0;
