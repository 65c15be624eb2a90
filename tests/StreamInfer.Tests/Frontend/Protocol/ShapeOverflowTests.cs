using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Grpc.Core;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Tests.Frontend.Grpc;
using StreamInfer.Tests.Frontend.KServe;
using StreamInfer.Tests.Frontend.WebSockets;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Protocol;

/// <summary>
/// Shapes whose element count overflows (past 64 bits, wrapping to a small or negative count, or past what 32-bit
/// buffers index) are refused as <c>invalid_input</c> naming the bound on every transport a client can send a shape on,
/// and the client's next request is served.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class ShapeOverflowTests(FrontendFixture fixture)
{
    /// <summary>Each shape, with no data: a wrapped-around count of zero would have matched it.</summary>
    public static TheoryData<long[]> Shapes => new()
    {
        new[] { 4294967296L, 4294967296L },
        new[] { 9223372036854775807L, 2L },
        new[] { 3037000500L, 3037000500L },
        new[] { 65536L, 65536L },
        new[] { 4294967296L, 4294967296L, 0L },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public async Task WebSocketJson_OverflowingShape_InvalidInputAndConnectionServes(long[] shape)
    {
        await using var client = await WsTestClient.ConnectAsync(fixture.WsUri);

        await client.SendAsync(new { type = "infer", id = "big", model = "echo", inputs = new { x = new { dtype = "float32", shape, data = Array.Empty<float>() } } });

        var error = await client.NextAsync();
        WebSocketBadInputTests.AssertError(error, "invalid_input", "big");
        AssertNamesTheBound(error.GetProperty("message").GetString());
        await WebSocketBadInputTests.AssertStillServesAsync(client);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public async Task WebSocketBinary_OverflowingShape_InvalidInputAndConnectionServes(long[] shape)
    {
        await using var client = await BinaryWsClient.ConnectAsync(fixture.WsUri);

        await client.SendBinaryAsync(BinaryFrames.Build(
            new { type = "infer", id = "big", model = "echo", inputs = new { x = new { dtype = "uint8", shape, bytes = new[] { 0, 0 } } } },
            []));

        var error = (await client.NextAsync()).Json;
        WebSocketBadInputTests.AssertError(error, "invalid_input", "big");
        AssertNamesTheBound(error.GetProperty("message").GetString());
        await BinaryFrameBadInputTests.AssertStillServesAsync(client);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public async Task KServeJsonAndBinary_OverflowingShape_400InvalidInputThenServes(long[] shape)
    {
        var json = new JsonObject { ["inputs"] = new JsonArray(new JsonObject { ["name"] = "x", ["datatype"] = "FP32", ["shape"] = Shape(shape), ["data"] = new JsonArray() }) };
        using (var response = await fixture.Http.PostAsync("/v2/models/echo/infer", new StringContent(json.ToJsonString(), Encoding.UTF8, "application/json")))
        {
            await AssertKServeInvalidInputAsync(response);
        }

        var header = new JsonObject { ["inputs"] = new JsonArray(BinaryTensorClient.Input("x", "UINT8", shape, [])) };
        using (var request = BinaryTensorClient.Request("echo", header, []))
        using (var response = await fixture.Http.SendAsync(request))
        {
            await AssertKServeInvalidInputAsync(response);
        }

        using var ok = await fixture.Http.PostAsync("/v2/models/echo/infer", new StringContent("""{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}]}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public async Task GrpcRawAndTyped_OverflowingShape_InvalidArgumentInvalidInputThenServes(long[] shape)
    {
        using var channel = GrpcTestTensors.Channel(fixture.GrpcUri);
        var client = new GRPCInferenceService.GRPCInferenceServiceClient(channel);
        var raw = new ModelInferRequest { ModelName = "echo" };
        raw.Inputs.Add(GrpcTestTensors.Input("x", "UINT8", shape));
        raw.RawInputContents.Add(ByteString.Empty);
        var typed = new ModelInferRequest { ModelName = "echo" };
        var input = GrpcTestTensors.Input("x", "FP32", shape);
        input.Contents = new InferTensorContents();
        typed.Inputs.Add(input);

        foreach (var request in new[] { raw, typed })
        {
            var failure = await GrpcTestTensors.FailureAsync(() => client.ModelInferAsync(request).ResponseAsync);
            Assert.Equal((StatusCode.InvalidArgument, "invalid_input"), (failure.Status, failure.Code));
            AssertNamesTheBound(failure.Message);
        }

        Assert.Equal([1d, 2d, 3d], GrpcTestTensors.Values(await client.ModelInferAsync(GrpcInferenceTests.RawF32Echo("after")), "y"));
    }

    private static JsonArray Shape(long[] shape) => new([.. shape.Select(d => JsonValue.Create(d))]);

    private static async Task AssertKServeInvalidInputAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{response.StatusCode}: {text}");
        var error = JsonDocument.Parse(text).RootElement;
        Assert.Equal("invalid_input", error.GetProperty("code").GetString());
        AssertNamesTheBound(error.GetProperty("error").GetString());
    }

    private static void AssertNamesTheBound(string? message)
    {
        Assert.Contains("input 'x'", message, StringComparison.Ordinal);
        Assert.Contains($"at most {TensorTypes.MaxElements} elements", message, StringComparison.Ordinal);
    }
}
