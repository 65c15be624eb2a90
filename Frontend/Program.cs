using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Hosting;

if (ApiKeyCommand.TryRun(args, Console.In, Console.Out))
{
    return;
}

var app = StreamInferApp.Create(args);
await app.RunAsync();
