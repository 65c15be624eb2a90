using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
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

/// <summary>A grid with an admin key: the dashboard and the operations need it; serving does not.</summary>
public sealed class AdminKeyTests : IAsyncLifetime
{
    private const string Key = "test-admin-key-0123456789";
    private WebApplication _app = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        (_app, var address) = await FrontendFixture.StartGridAsync(FrontendFixture.IsolatedSettings(extra: ("StreamInfer:Frontend:AdminKey", Key)));
        _http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(30) };
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [Theory]
    [InlineData("GET", "/dashboard/")]
    [InlineData("GET", "/dashboard/DashboardCounters")]
    [InlineData("POST", "/api/reload")]
    [InlineData("POST", "/api/models/echo/rollback")]
    public async Task AdminEndpoint_WithoutTheKey_401WithABrowserPromptAndAStructuredError(string method, string path)
    {
        using var response = await _http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("Basic", response.Headers.WwwAuthenticate.Single().Scheme);
        var error = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error");
        Assert.Equal("unauthorized", error.GetProperty("code").GetString());

        using var wrong = new HttpRequestMessage(new HttpMethod(method), path);
        wrong.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Key + "x");
        using var refused = await _http.SendAsync(wrong);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
    }

    [Fact]
    public async Task Dashboard_WithTheKeyAsBearerOrBasicPassword_Serves()
    {
        using var bearer = new HttpRequestMessage(HttpMethod.Get, "/dashboard/DashboardCounters");
        bearer.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        using (var response = await _http.SendAsync(bearer))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            // Its counters fill in over the dashboard's first update period; the shape is there at once.
            Assert.Equal(JsonValueKind.Number, (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("totalActiveHostCount").ValueKind);
        }

        // What a browser sends after its login prompt: any user name, the key as password.
        using var basic = new HttpRequestMessage(HttpMethod.Get, "/dashboard/");
        basic.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("operator:" + Key)));
        using (var response = await _http.SendAsync(basic))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Serving never needs the key.
        using var answer = await _http.PostAsJsonAsync("/predict", new { model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 1 } } } });
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
    }
}
