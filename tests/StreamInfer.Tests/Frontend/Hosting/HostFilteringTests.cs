using System.Net;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Hosting;

/// <summary>
/// <c>AllowedHosts</c>, unset here, so the loopback names: a request for another host name, what a page on a rebinding
/// domain sends, is refused before any endpoint.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class HostFilteringTests(FrontendFixture fixture)
{
    [Theory]
    [InlineData("rebound.example")]
    [InlineData("192.0.2.7")]
    public async Task Request_ForAnotherHostName_Refused400(string host)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/models/echo");
        request.Headers.Host = $"{host}:{fixture.HttpUri.Port}";
        using var response = await fixture.Http.SendAsync(request);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    [Theory]
    [InlineData("localhost")]
    [InlineData("127.0.0.1")]
    public async Task Request_ForALoopbackName_Served(string host)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/models/echo");
        request.Headers.Host = $"{host}:{fixture.HttpUri.Port}";
        using var response = await fixture.Http.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }
}
