using StreamInfer.Frontend.Hosting;

var app = StreamInferApp.Create(args);
await app.RunAsync();
