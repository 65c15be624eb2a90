using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Operations;

/// <summary>
/// A grid with an admin key: the dashboard and the operations need it; operations take it only as a bearer token and
/// their body only as JSON, the dashboard's pages also as HTTP Basic; serving does not need it.
/// </summary>
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
    [InlineData("GET", "/dashboard/", "Basic")]
    [InlineData("GET", "/dashboard/DashboardCounters", "Basic")]
    [InlineData("POST", "/api/reload", "Bearer")]
    [InlineData("POST", "/api/models/echo/rollback", "Bearer")]
    public async Task AdminEndpoint_WithoutTheKey_401WithTheSchemeItTakesAndAStructuredError(string method, string path, string scheme)
    {
        using var response = await _http.SendAsync(Request(method, path));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal(scheme, response.Headers.WwwAuthenticate.Single().Scheme);
        Assert.Equal("unauthorized", await CodeAsync(response));

        using var wrong = Request(method, path);
        wrong.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Key + "x");
        using var refused = await _http.SendAsync(wrong);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
    }

    [Fact]
    public async Task Operation_WithTheKeyAsBasicPassword_Refused401()
    {
        // What a browser would replay from its cache of Basic credentials: never enough for an operation.
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/reload") { Content = Json() };
        request.Headers.Authorization = Basic();
        using var response = await _http.SendAsync(request);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("unauthorized", await CodeAsync(response));
    }

    [Fact]
    public async Task Operation_FormPostWithTheKey_Refused415()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/models/echo/rollback") { Content = new FormUrlEncodedContent([]) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        using var response = await _http.SendAsync(request);

        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        Assert.Equal("unsupported_media_type", await CodeAsync(response));
    }

    [Fact]
    public async Task Operation_BearerAndAnEmptyJsonBody_Served()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/reload") { Content = Json() };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        using var response = await _http.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(JsonValueKind.Array, (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("added").ValueKind);
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
        basic.Headers.Authorization = Basic();
        using (var response = await _http.SendAsync(basic))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Serving never needs the key.
        using var answer = await _http.PostAsJsonAsync("/predict", new { model = "echo", inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 1 } } } });
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
    }

    private static HttpRequestMessage Request(string method, string path)
        => new(new HttpMethod(method), path) { Content = method == "POST" ? Json() : null };

    /// <summary>An empty body declared as JSON.</summary>
    internal static StringContent Json() => new(string.Empty, Encoding.UTF8, "application/json");

    internal static async Task<string?> CodeAsync(HttpResponseMessage response)
        => (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetString();

    private static AuthenticationHeaderValue Basic() => new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("operator:" + Key)));
}

/// <summary>Without an admin key (the embedded default on loopback) operations stay open, but only to JSON posts.</summary>
[Collection(FrontendCollection.Name)]
public sealed class OpenOperationsTests(FrontendFixture fixture)
{
    [Fact]
    public async Task Operation_FormOrNoContentType_Refused415()
    {
        // A web page can send either from the operator's browser without asking the frontend first.
        using var form = await fixture.Http.PostAsync("/api/models/echo/rollback", new StringContent("x=1", Encoding.UTF8, "application/x-www-form-urlencoded"));
        using var bare = await fixture.Http.PostAsync("/api/models/echo/rollback", null);
        using var text = await fixture.Http.PostAsync("/api/reload", new StringContent("{}", Encoding.UTF8, "text/plain"));

        foreach (var response in new[] { form, bare, text })
        {
            Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
            Assert.Equal("unsupported_media_type", await AdminKeyTests.CodeAsync(response));
        }
    }
}
