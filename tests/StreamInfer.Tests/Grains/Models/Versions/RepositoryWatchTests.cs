using Microsoft.AspNetCore.Builder;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models.Versions;

/// <summary>The optional repository watch: a grid of its own, polling its repository every 200 ms.</summary>
public sealed class RepositoryWatchTests : IAsyncLifetime
{
    private readonly string _repository = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
    private WebApplication _app = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        TestModels.WriteScale(_repository, "watched", "1", 1f);
        File.WriteAllText(Path.Combine(_repository, "watched", "config.json"), """{ "kind": "tensor", "max_batch_size": 8 }""");
        var settings = new Dictionary<string, string?>
        {
            ["Urls"] = "http://127.0.0.1:0",
            ["Logging:LogLevel:Default"] = "Warning",
            ["StreamInfer:Orleans:SiloPort"] = Ports.FreeText(),
            ["StreamInfer:Orleans:GatewayPort"] = Ports.FreeText(),
            ["StreamInfer:Repository:Path"] = _repository,
            ["StreamInfer:Repository:BuiltInTinyLm"] = "false",
            ["StreamInfer:Repository:WatchInterval"] = "00:00:00.200",
        };
        (_app, var address) = await FrontendFixture.StartGridAsync(settings);
        _http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(30) };
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task Watch_NewVersionAndNewModelFolders_ServedWithoutAnyCall()
    {
        Assert.Equal(("1", 2f), await PredictAsync("watched", 2f));

        TestModels.WriteScale(_repository, "watched", "2", 2f);
        File.WriteAllText(Path.Combine(_repository, "watched", "config.json"), """{ "kind": "tensor", "max_batch_size": 8 }""");
        TestModels.WriteScale(_repository, "appeared", "1", 5f);

        var rolled = await Eventually.UntilAsync(() => PredictAsync("watched", 2f), a => a.Version == "2", TimeSpan.FromSeconds(30), "the watch rolls out version 2");
        var added = await Eventually.UntilAsync(() => PredictAsync("appeared", 2f), a => a.Version == "1", TimeSpan.FromSeconds(30), "the watch loads the new model");

        Assert.Equal(4f, rolled.Y);
        Assert.Equal(10f, added.Y);
    }

    private Task<(string? Version, float Y)> PredictAsync(string model, float x) => ScaleModel.TryPredictAsync(_http, model, x);
}
