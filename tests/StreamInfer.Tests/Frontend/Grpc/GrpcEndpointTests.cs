using System.Collections.Concurrent;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Grpc;

/// <summary>The gRPC port beside <c>Urls</c>: both served when <c>Urls</c> comes from the command line, the gRPC one
/// HTTP/2 only, and Kestrel with nothing to warn about.</summary>
public sealed class GrpcEndpointTests
{
    [Fact]
    public async Task Start_UrlsOnCommandLineAndGrpcUrl_BothServedWithoutWarning()
    {
        var grpcPort = Ports.Free();
        var settings = FrontendFixture.IsolatedSettings(extra: ("StreamInfer:Frontend:GrpcUrl", $"http://127.0.0.1:{grpcPort}"));
        settings.Remove("Urls");
        var warnings = new ConcurrentQueue<string>();
        var app = StreamInferApp.Create(["--urls", "http://127.0.0.1:0"], b =>
        {
            b.Configuration.AddInMemoryCollection(settings);
            b.Logging.AddProvider(new WarningLog(warnings));
        });
        await app.StartAsync();
        try
        {
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Select(a => new Uri(a)).ToList();
            Assert.Equal(2, addresses.Count);
            var http = addresses.Single(a => a.Port != grpcPort);
            Assert.NotEqual(0, http.Port);

            using var client = new HttpClient();
            Assert.Equal("ok", await client.GetStringAsync(new Uri(http, "/healthz")));
            using var channel = GrpcTestTensors.Channel(new Uri($"http://127.0.0.1:{grpcPort}"));
            Assert.True((await new GRPCInferenceService.GRPCInferenceServiceClient(channel).ServerLiveAsync(new ServerLiveRequest())).Live);
            // HTTP/1.1 is not spoken on the gRPC port.
            using var h1 = await client.GetAsync(new Uri($"http://127.0.0.1:{grpcPort}/healthz"));
            Assert.False(h1.IsSuccessStatusCode);

            Assert.DoesNotContain(warnings, w => w.StartsWith("Microsoft.AspNetCore", StringComparison.Ordinal));
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    private sealed class WarningLog(ConcurrentQueue<string> warnings) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, warnings);

        public void Dispose()
        {
        }

        private sealed class Logger(string category, ConcurrentQueue<string> warnings) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (IsEnabled(logLevel))
                {
                    warnings.Enqueue($"{category}: {formatter(state, exception)}");
                }
            }
        }
    }
}
