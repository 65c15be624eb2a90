using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Hosting;

/// <summary>The Orleans dashboard at /dashboard on the embedded default: its page, and its data, live.</summary>
[Collection(FrontendCollection.Name)]
public sealed class DashboardTests(FrontendFixture fixture)
{
    [Fact]
    public async Task Dashboard_Page_ServesTheAppAndItsScript()
    {
        // /dashboard redirects to /dashboard/ so that the page's relative asset paths resolve under it.
        using var page = await fixture.Http.GetAsync("/dashboard");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("/dashboard/", page.RequestMessage!.RequestUri!.AbsolutePath);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("index.min.js", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using var script = await fixture.Http.GetAsync("/dashboard/index.min.js");
        Assert.Equal(HttpStatusCode.OK, script.StatusCode);
        Assert.True((await script.Content.ReadAsByteArrayAsync()).Length > 10_000);
    }

    [Fact]
    public async Task DashboardCounters_AfterRequests_ShowTheSiloAndTheGridsGrainsCalled()
    {
        // The first query switches the grain-call profiler on (it runs only while someone watches).
        using (var first = await fixture.Http.GetAsync("/dashboard/DashboardCounters"))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        for (var i = 0; i < 10; i++)
        {
            using var answer = await fixture.Http.PostAsJsonAsync("/predict", new { model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { i } } } });
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        }

        var counters = await Eventually.UntilAsync(
            async () => JsonDocument.Parse(await fixture.Http.GetStringAsync("/dashboard/DashboardCounters")).RootElement.Clone(),
            c => Calls(c, "ClientSessionGrain") > 0 && Calls(c, "BatcherGrain") > 0,
            TimeSpan.FromSeconds(30),
            "the dashboard counts calls to the session and batcher grains");
        Assert.True(counters.GetProperty("totalActiveHostCount").GetInt32() >= 1);
        Assert.Contains(counters.GetProperty("hosts").EnumerateArray(), h => h.GetProperty("status").GetString() == "Active");

        static long Calls(JsonElement counters, string grain) => counters.GetProperty("simpleGrainStats").EnumerateArray()
            .Where(s => s.GetProperty("grainType").GetString()!.Contains(grain, StringComparison.Ordinal))
            .Sum(s => s.GetProperty("totalCalls").GetInt64());
    }
}
