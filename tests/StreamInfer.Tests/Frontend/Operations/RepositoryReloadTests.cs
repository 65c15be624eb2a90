using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Operations;

/// <summary><c>POST /api/reload</c> and SIGHUP: the repository read again, new versions rolled out, models added and removed.</summary>
[Collection(FrontendCollection.Name)]
public sealed class RepositoryReloadTests(FrontendFixture fixture)
{
    [Fact]
    public async Task Reload_NewVersionFolder_RolledOutAndServed()
    {
        TestModels.WriteScale(fixture.Repository, "reload-ver", "2", 2f);
        File.WriteAllText(Path.Combine(fixture.Repository, "reload-ver", "config.json"), """{ "kind": "tensor", "max_batch_size": 8 }""");

        var report = await ReloadAsync();

        var rollout = Assert.Single(report.GetProperty("rollouts").EnumerateArray(), r => r.GetProperty("model").GetString() == "reload-ver");
        Assert.Equal("committed", rollout.GetProperty("phase").GetString());
        Assert.Equal(("2", 8f), await PredictAsync("reload-ver", 4f));
    }

    [Fact]
    public async Task Reload_NewModelFolder_AddedAndServed()
    {
        TestModels.WriteScale(fixture.Repository, "reload-new", "1", 3f);

        var report = await ReloadAsync();

        Assert.Contains("reload-new", report.GetProperty("added").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal(("1", 6f), await PredictAsync("reload-new", 2f));
    }

    [Fact]
    public async Task Reload_ModelFolderRemoved_NoLongerServed()
    {
        Assert.Equal(("1", 1f), await PredictAsync("reload-gone", 1f));
        Directory.Delete(Path.Combine(fixture.Repository, "reload-gone"), recursive: true);

        var report = await ReloadAsync();
        using var gone = await fixture.Http.PostAsJsonAsync("/predict", ScaleModel.Body("reload-gone", 1f));

        Assert.Contains("reload-gone", report.GetProperty("removed").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
    }

    [Fact]
    public async Task Sighup_NewVersionFolder_RolledOut()
    {
        TestModels.WriteScale(fixture.Repository, "reload-sig", "2", 2f);
        File.WriteAllText(Path.Combine(fixture.Repository, "reload-sig", "config.json"), """{ "kind": "tensor", "max_batch_size": 8 }""");

        using (var kill = Process.Start("kill", ["-HUP", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
            Assert.Equal(0, kill.ExitCode);
        }

        var served = await Eventually.UntilAsync(() => PredictAsync("reload-sig", 3f), a => a.Version == "2", TimeSpan.FromSeconds(30), "SIGHUP rolls out version 2");
        Assert.Equal(6f, served.Y);
    }

    private async Task<JsonElement> ReloadAsync()
    {
        using var response = await fixture.Http.PostAsync("/api/reload", JsonContent.Create(new { }));
        var report = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(response.StatusCode == HttpStatusCode.OK, report.ToString());
        return report;
    }

    private Task<(string Version, float Y)> PredictAsync(string model, float x) => ScaleModel.PredictAsync(fixture.Http, model, x);
}
