using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.KServe.BinaryTensorClient;

namespace StreamInfer.Tests.Frontend.KServe;

/// <summary>
/// Malformed binary requests: each answered with a structured error (status, <c>code</c>, a message naming the
/// problem), and the same client's next request is answered as usual.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class KServeBinaryBadInputTests(FrontendFixture fixture)
{
    private const string OneFloat = """{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}""";

    [Theory]
    [InlineData(OneFloat, "0000803f", "9999", "bad_request", "Inference-Header-Content-Length is 9999")]
    [InlineData(OneFloat, "0000803f", "12abc", "bad_request", "Inference-Header-Content-Length must be")]
    [InlineData(OneFloat, "0000803f", "-5", "bad_request", "Inference-Header-Content-Length must be")]
    [InlineData("""{"inputs":[{"name":"x",""", "0000803f", null, "bad_request", "not valid JSON")]
    [InlineData(OneFloat, "0000803f0000803f", null, "bad_request", "add up to 4 bytes, but 8")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}}]}""", "0000803f", null, "bad_request", "input 'x' has binary_data_size 8, but only 4 of the 4 bytes")]
    [InlineData("""{"inputs":[{"name":"a","datatype":"UINT8","shape":[4],"parameters":{"binary_data_size":9223372036854775807}},{"name":"b","datatype":"UINT8","shape":[4],"parameters":{"binary_data_size":9223372036854775807}},{"name":"c","datatype":"UINT8","shape":[4],"parameters":{"binary_data_size":4611686018427387910}}]}""", "01020304", null, "bad_request", "input 'a' has binary_data_size 9223372036854775807, but only 4")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":4}}]}""", "0000803f", null, "invalid_input", "needs 8 bytes, 4 were given")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1],"parameters":{"binary_data_size":4}}]}""", "0000803f", null, "invalid_input", "both 'data' and binary_data_size")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"UINT32","shape":[1],"parameters":{"binary_data_size":4}}]}""", "01000000", null, "invalid_input", "unknown datatype \"UINT32\"")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":7}}]}""", "64000000616263", null, "invalid_input", "declares 100 bytes")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":5}}]}""", "01000000ff", null, "invalid_input", "not UTF-8")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"BOOL","shape":[3],"parameters":{"binary_data_size":3}}]}""", "010200", null, "invalid_input", "BOOL element 1 is 2")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":-4}}]}""", "0000803f", null, "invalid_input", "binary_data_size must be")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":"4"}}]}""", "0000803f", null, "invalid_input", "binary_data_size must be")]
    [InlineData(OneFloat, "", "0", "bad_request", "has binary_data_size, but the request has no")]
    [InlineData("""{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"outputs":[{"name":"x","parameters":{"binary_data":1}}]}""", "", null, "bad_request", "'parameters.binary_data' must be true or false")]
    public async Task Infer_MalformedBinaryRequest_StructuredErrorThenTheNextRequestIsAnswered(string header, string binaryHex, string? headerLength, string code, string named)
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1 }) { BaseAddress = fixture.HttpUri, Timeout = TimeSpan.FromSeconds(30) };

        using (var request = Request("echo", Encoding.UTF8.GetBytes(header), Convert.FromHexString(binaryHex), headerLength))
        using (var response = await http.SendAsync(request))
        {
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{response.StatusCode}: {text}");
            Assert.StartsWith("application/json", response.Content.Headers.ContentType?.ToString(), StringComparison.Ordinal);
            var error = JsonDocument.Parse(text).RootElement;
            Assert.Equal(code, error.GetProperty("code").GetString());
            Assert.Contains(named, error.GetProperty("error").GetString(), StringComparison.Ordinal);
        }

        var next = new JsonObject
        {
            ["inputs"] = new JsonArray(Input("x", "FP32", [2], Raw(1f, 2f))),
            ["parameters"] = new JsonObject { ["binary_data_output"] = true },
        };
        using var again = Request("echo", next, Raw(1f, 2f));
        using var answer = await http.SendAsync(again);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal(Raw(1f, 2f), (await ReadAsync(answer)).Binary["x"]);
    }

    [Fact]
    public async Task Infer_NaNOutputAsJsonOrBinary_JsonCarriesItAsAStringBinaryAsItsBits()
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1 }) { BaseAddress = fixture.HttpUri, Timeout = TimeSpan.FromSeconds(30) };

        // NaN arrives as raw bytes and comes back from echo as NaN, which JSON has no number for: it is the string "NaN".
        var header = new JsonObject { ["inputs"] = new JsonArray(Input("x", "FP32", [2], Raw(1f, float.NaN))) };
        using (var request = Request("echo", header, Raw(1f, float.NaN)))
        using (var response = await http.SendAsync(request))
        {
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}: {text}");
            var data = JsonDocument.Parse(text).RootElement.GetProperty("outputs")[0].GetProperty("data");
            Assert.Equal(1f, data[0].GetSingle());
            Assert.Equal("NaN", data[1].GetString());
        }

        header["parameters"] = new JsonObject { ["binary_data_output"] = true };
        using var binary = Request("echo", header, Raw(1f, float.NaN));
        using var answer = await http.SendAsync(binary);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal(Raw(1f, float.NaN), (await ReadAsync(answer)).Binary["x"]);
    }

    [Fact]
    public async Task Infer_ClassificationOutput_InvalidInputNamingIt()
    {
        var header = new JsonObject
        {
            ["inputs"] = new JsonArray(Input("x", "FP32", [2], Raw(1f, 2f))),
            ["outputs"] = new JsonArray(new JsonObject { ["name"] = "x", ["parameters"] = new JsonObject { ["classification"] = 1 } }),
        };

        using var request = Request("echo", header, Raw(1f, 2f));
        using var response = await fixture.Http.SendAsync(request);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("invalid_input", error.GetProperty("code").GetString());
        Assert.Contains("classification", error.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Infer_CompressedBody_BadRequestNamingTheEncoding()
    {
        using var request = Request("echo", Encoding.UTF8.GetBytes(OneFloat), Raw(1f));
        request.Content!.Headers.ContentEncoding.Add("gzip");
        using var response = await fixture.Http.SendAsync(request);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("bad_request", error.GetProperty("code").GetString());
        Assert.Contains("gzip", error.GetProperty("error").GetString(), StringComparison.Ordinal);
    }
}
