using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.KServe.BinaryTensorClient;

namespace StreamInfer.Tests.Frontend.KServe;

/// <summary>A grid of its own with small limits: 2 KiB of JSON, 16 KiB of binary request.</summary>
public sealed class BinaryLimitsGrid : IAsyncLifetime
{
    public const int MaxFrameBytes = 2048;
    public const int MaxBinaryBytes = 16384;

    private WebApplication _app = null!;

    public HttpClient Http { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        (_app, var uri) = await FrontendFixture.StartGridAsync(FrontendFixture.IsolatedSettings(
            extra:
            [
                ("StreamInfer:Frontend:MaxFrameBytes", MaxFrameBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                ("StreamInfer:Frontend:MaxBinaryBytes", MaxBinaryBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ]));
        Http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1 }) { BaseAddress = uri, Timeout = TimeSpan.FromSeconds(30) };
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>
/// The size limits of KServe bodies: JSON up to the frame limit, a body with binary tensor data up to the binary
/// ceiling (its JSON header still under the frame limit); past either, 413 <c>payload_too_large</c> naming the limit,
/// and the next request is answered.
/// </summary>
public sealed class KServeBinaryLimitTests(BinaryLimitsGrid grid) : IClassFixture<BinaryLimitsGrid>
{
    [Fact]
    public async Task Infer_BinaryBodyPastTheJsonLimitWithinTheBinaryOne_Answers()
    {
        var floats = Raw(Enumerable.Range(0, 3000).Select(i => (float)i).ToArray());
        Assert.True(floats.Length > BinaryLimitsGrid.MaxFrameBytes);

        var answer = await EchoAsync(floats);

        Assert.Equal(floats, answer);
    }

    [Fact]
    public async Task Infer_BinaryBodyDeclaredPastMaxBinaryBytes_413NamingTheLimit()
    {
        var floats = new byte[BinaryLimitsGrid.MaxBinaryBytes + 4];
        using var request = Request("echo", Header(floats.Length), floats);

        using var response = await grid.Http.SendAsync(request);

        await AssertTooLargeAsync(response, BinaryLimitsGrid.MaxBinaryBytes);
        Assert.Equal(Raw(5f), await EchoAsync(Raw(5f)));
    }

    [Fact]
    public async Task Infer_ChunkedBinaryBodyPastMaxBinaryBytes_413NamingTheLimit()
    {
        var floats = new byte[BinaryLimitsGrid.MaxBinaryBytes + 4];
        using var request = Request("echo", Header(floats.Length), floats);
        var bytes = await request.Content!.ReadAsByteArrayAsync();
        request.Content = new StreamContent(new MemoryStream(bytes));
        request.Headers.TransferEncodingChunked = true;

        using var response = await grid.Http.SendAsync(request);

        await AssertTooLargeAsync(response, BinaryLimitsGrid.MaxBinaryBytes);
        Assert.Equal(Raw(5f), await EchoAsync(Raw(5f)));
    }

    [Fact]
    public async Task Infer_JsonHeaderPastMaxFrameBytes_413NamingTheFrameLimit()
    {
        var header = Header(4).ToJsonString().Replace("{\"inputs\"", "{" + new string(' ', BinaryLimitsGrid.MaxFrameBytes) + "\"inputs\"", StringComparison.Ordinal);
        using var request = Request("echo", Encoding.UTF8.GetBytes(header), Raw(1f));

        using var response = await grid.Http.SendAsync(request);

        await AssertTooLargeAsync(response, BinaryLimitsGrid.MaxFrameBytes);
        Assert.Equal(Raw(5f), await EchoAsync(Raw(5f)));
    }

    [Fact]
    public async Task Infer_JsonBodyPastMaxFrameBytes_413NamingTheFrameLimit()
    {
        var body = JsonSerializer.Serialize(new
        {
            inputs = new[] { new { name = "x", datatype = "FP32", shape = new[] { 1, 1000 }, data = Enumerable.Range(0, 1000).Select(i => i * 1.5f) } },
        });
        Assert.True(body.Length > BinaryLimitsGrid.MaxFrameBytes);
        using var content = new StringContent(body, Encoding.UTF8, "application/json");

        using var response = await grid.Http.PostAsync("/v2/models/echo/infer", content);

        await AssertTooLargeAsync(response, BinaryLimitsGrid.MaxFrameBytes);
        Assert.Equal(Raw(5f), await EchoAsync(Raw(5f)));
    }

    private static JsonObject Header(int bytes) => new()
    {
        ["inputs"] = new JsonArray(Input("x", "FP32", [bytes / 4], new byte[bytes])),
        ["parameters"] = new JsonObject { ["binary_data_output"] = true },
    };

    private async Task<byte[]> EchoAsync(byte[] floats)
    {
        using var request = Request("echo", Header(floats.Length), floats);
        using var response = await grid.Http.SendAsync(request);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        return (await ReadAsync(response)).Binary["x"];
    }

    private static async Task AssertTooLargeAsync(HttpResponseMessage response, int limit)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.RequestEntityTooLarge, $"{response.StatusCode}: {text}");
        var error = JsonDocument.Parse(text).RootElement;
        Assert.Equal("payload_too_large", error.GetProperty("code").GetString());
        Assert.Contains($"at most {limit} bytes", error.GetProperty("error").GetString(), StringComparison.Ordinal);
    }
}
