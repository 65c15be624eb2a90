using Microsoft.Extensions.Hosting;
using StreamInfer.Silo;

using var host = SiloHost.Build(args);
await host.RunAsync();
