using System.Net;
using System.Text;
using System.Text.Json;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Http;

/// <summary>Stateful sequences over HTTP: <c>/predict</c>'s body fields and KServe's parameters, misuse answered with
/// the codes' statuses.</summary>
[Collection(FrontendCollection.Name)]
public sealed class PredictSequenceTests(FrontendFixture fixture)
{
    [Theory]
    [InlineData("/predict", "{\"model\":\"vad\",\"inputs\":{\"x\":{\"dtype\":\"float32\",\"shape\":[1],\"data\":[1]}},\"sequence_id\":\"none\"}", HttpStatusCode.NotFound, "unknown_sequence")]
    [InlineData("/predict", "{\"model\":\"echo\",\"inputs\":{\"x\":{\"dtype\":\"float32\",\"shape\":[1],\"data\":[1]}},\"sequence_start\":true}", HttpStatusCode.BadRequest, "bad_request")]
    [InlineData("/v2/models/vad/infer", "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}],\"parameters\":{\"sequence_id\":77}}", HttpStatusCode.NotFound, "unknown_sequence")]
    [InlineData("/v2/models/echo/infer", "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}],\"parameters\":{\"sequence_id\":0}}", HttpStatusCode.BadRequest, "bad_request")]
    public async Task Infer_SequenceMisuse_StatusAndStructuredError(string path, string body, HttpStatusCode status, string code)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await fixture.Http.PostAsync(path, content);

        Assert.Equal(status, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var error = json.RootElement.GetProperty("error");
        var (wire, message) = error.ValueKind == JsonValueKind.Object
            ? (error.GetProperty("code").GetString(), error.GetProperty("message").GetString())
            : (json.RootElement.GetProperty("code").GetString(), error.GetString());
        Assert.Equal(code, wire);
        Assert.Contains("sequence", message, StringComparison.Ordinal);
    }
}
