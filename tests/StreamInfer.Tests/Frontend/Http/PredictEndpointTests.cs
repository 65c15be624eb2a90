using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Http;

[Collection(FrontendCollection.Name)]
public sealed class PredictEndpointTests(FrontendFixture fixture)
{
    [Fact]
    public async Task Predict_Echo_ReturnsOutputsVersionAndTiming()
    {
        using var response = await fixture.Http.PostAsJsonAsync("/predict", new
        {
            id = "p1",
            model = "echo",
            inputs = new { x = new { dtype = "int64", shape = new[] { 2, 2 }, data = new[] { new[] { 1, 2 }, new[] { 3, 4 } } } },
        });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var root = body.RootElement;
        Assert.Equal("p1", root.GetProperty("id").GetString());
        Assert.Equal("1", root.GetProperty("model_version").GetString());
        var x = root.GetProperty("outputs").GetProperty("x");
        Assert.Equal("int64", x.GetProperty("dtype").GetString());
        Assert.Equal([1L, 2, 3, 4], x.GetProperty("data").EnumerateArray().Select(e => e.GetInt64()));
        Assert.True(root.GetProperty("timing").GetProperty("batch_size").GetInt32() >= 1);
    }

    [Theory]
    [InlineData("{\"model\":\"no-such-model\",\"inputs\":{}}", HttpStatusCode.NotFound, "unknown_model")]
    [InlineData("{oops", HttpStatusCode.BadRequest, "bad_request")]
    [InlineData("{\"inputs\":{}}", HttpStatusCode.BadRequest, "bad_request")]
    [InlineData("{\"model\":\"echo\",\"inputs\":{\"x\":{\"dtype\":\"float32\",\"shape\":[3],\"data\":[1]}}}", HttpStatusCode.BadRequest, "invalid_input")]
    [InlineData("{\"model\":\"echo\"}", HttpStatusCode.BadRequest, "invalid_input")]
    [InlineData("{\"model\":\"\\udc00\"}", HttpStatusCode.BadRequest, "bad_request")]
    [InlineData("{\"model\":\"echo\",\"inputs\":{\"x\":{\"dtype\":\"float64\",\"shape\":[1],\"data\":[-1e999]}}}", HttpStatusCode.BadRequest, "invalid_input")]
    public async Task Predict_BadInput_StatusAndStructuredError(string body, HttpStatusCode status, string code)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await fixture.Http.PostAsync("/predict", content);

        Assert.Equal(status, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var error = json.RootElement.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
    }

    [Fact]
    public async Task Predict_BodyLargerThanLimit_413PayloadTooLarge()
    {
        using var content = new ByteArrayContent(new byte[FrontendFixture.MaxFrameBytes + 1]);
        using var response = await fixture.Http.PostAsync("/predict", content);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("payload_too_large", json.RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Predict_DeadlinePassesInQueue_504DeadlineExceeded()
    {
        using var busy = fixture.Http.PostAsJsonAsync("/predict", new { model = "slow-http", inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 1 } } } });
        await Eventually.UntilAsync(() => fixture.Batcher("slow-http").GetStatusAsync(), s => s.Running == 1, what: "the first request occupies the device");
        // Second request from the same caller, behind the busy device, with a short deadline.
        using var late = await fixture.Http.PostAsJsonAsync("/predict", new { model = "slow-http", timeout_ms = 100, inputs = new { x = new { dtype = "float32", shape = new[] { 1 }, data = new[] { 2 } } } });

        Assert.Equal(HttpStatusCode.GatewayTimeout, late.StatusCode);
        using var json = JsonDocument.Parse(await late.Content.ReadAsStringAsync());
        Assert.Equal("deadline_exceeded", json.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(HttpStatusCode.OK, (await busy).StatusCode);
    }
}
