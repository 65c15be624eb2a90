using System.Net.Http.Json;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Tests.Infrastructure;
using static StreamInfer.Tests.Frontend.Grpc.GrpcTestTensors;

namespace StreamInfer.Tests.Frontend.Grpc;

/// <summary>
/// KServe v2 over gRPC (<c>inference.GRPCInferenceService</c>) with a client generated from the frontend's .proto, over
/// a real h2c channel to the embedded grid: health, metadata and <c>ModelInfer</c> raw and typed on the <c>multi</c>
/// model of <see cref="TestModels"/>, answered as the JSON KServe path answers; errors as gRPC statuses.
/// </summary>
[Collection(FrontendCollection.Name)]
public sealed class GrpcInferenceTests(FrontendFixture fixture) : IDisposable
{
    private static readonly float[] F32 = [1f, -2f, 0.5f, 3f, 4f, -6f];
    private static readonly float[] F16 = [1.5f, -2.25f, 0f, 8f];
    private static readonly long[] I64 = [9_000_000_000L, 1, -5, 2];
    private static readonly int[] I32 = [7, -8, 1_000_000, 0];
    private static readonly bool[] Flag = [true, false, false, true];
    private static readonly string[] Text = ["héllo \"you\"", ""];

    private readonly global::Grpc.Net.Client.GrpcChannel _channel = Channel(fixture.GrpcUri);

    private GRPCInferenceService.GRPCInferenceServiceClient Client => new(_channel);

    public void Dispose() => _channel.Dispose();

    [Fact]
    public async Task ServerLiveReadyMetadata_Grid_LiveReadyAndNamed()
    {
        Assert.True((await Client.ServerLiveAsync(new ServerLiveRequest())).Live);
        Assert.True((await Client.ServerReadyAsync(new ServerReadyRequest())).Ready);
        var metadata = await Client.ServerMetadataAsync(new ServerMetadataRequest());
        Assert.Equal("streaminfer", metadata.Name);
        Assert.False(string.IsNullOrEmpty(metadata.Version));
        var http = await fixture.Http.GetFromJsonAsync<JsonElement>("/v2");
        Assert.Equal(http.GetProperty("extensions").EnumerateArray().Select(e => e.GetString()), metadata.Extensions);
        Assert.Contains("binary_tensor_data", metadata.Extensions);
    }

    [Fact]
    public async Task ModelReady_ServedModelAndVersion_True()
    {
        Assert.True((await Client.ModelReadyAsync(new ModelReadyRequest { Name = "multi" })).Ready);
        Assert.True((await Client.ModelReadyAsync(new ModelReadyRequest { Name = "multi", Version = "1" })).Ready);
    }

    [Fact]
    public async Task ModelMetadata_Multi_SameAsKServeHttp()
    {
        var metadata = await Client.ModelMetadataAsync(new ModelMetadataRequest { Name = "multi" });
        var json = await fixture.Http.GetFromJsonAsync<JsonElement>("/v2/models/multi");

        Assert.Equal("multi", metadata.Name);
        Assert.Equal(["1"], metadata.Versions);
        Assert.Equal(json.GetProperty("platform").GetString(), metadata.Platform);
        static string Describe(string name, string datatype, IEnumerable<long> shape) => $"{name}:{datatype}:[{string.Join(',', shape)}]";
        static IEnumerable<string> FromJson(JsonElement specs) => specs.EnumerateArray().Select(s => Describe(
            s.GetProperty("name").GetString()!, s.GetProperty("datatype").GetString()!, s.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64())));
        Assert.Equal(FromJson(json.GetProperty("inputs")), metadata.Inputs.Select(s => Describe(s.Name, s.Datatype, s.Shape)));
        Assert.Equal(FromJson(json.GetProperty("outputs")), metadata.Outputs.Select(s => Describe(s.Name, s.Datatype, s.Shape)));
        Assert.Contains("f16:FP16:[-1,2]", metadata.Inputs.Select(s => Describe(s.Name, s.Datatype, s.Shape)));
    }

    [Fact]
    public async Task ModelInfer_RawEveryDatatypeOnMulti_AnswersRawAsTheJsonPath()
    {
        var request = new ModelInferRequest { ModelName = "multi", Id = "g1" };
        request.Inputs.Add([Input("f32", "FP32", 2, 3), Input("f16", "FP16", 2, 2), Input("i64", "INT64", 2, 2), Input("i32", "INT32", 2, 2), Input("flag", "BOOL", 2, 2), Input("text", "BYTES", 2, 1)]);
        request.RawInputContents.Add([Floats(F32), Halves(F16), Longs(I64), Ints(I32), Bools(Flag), Strings(Text)]);

        var response = await Client.ModelInferAsync(request);

        Assert.Equal("multi", response.ModelName);
        Assert.Equal("1", response.ModelVersion);
        Assert.Equal("g1", response.Id);
        Assert.Equal(response.Outputs.Count, response.RawOutputContents.Count);
        await AssertSameAsJsonAsync(response, ["f32_out", "f16_out", "i64_sum", "i32_out", "flag_out", "text_out"]);
        Assert.Equal([2d, -4d, 1d, 6d, 8d, -12d], Values(response, "f32_out"));
        Assert.Equal([3d, -4.5d, 0d, 16d], Values(response, "f16_out"));
        Assert.Equal([9_000_000_001d, -3d], Values(response, "i64_sum"));
        Assert.Equal([2L, 1L], response.Outputs.Single(o => o.Name == "i64_sum").Shape);
        Assert.Equal(Text, Values(response, "text_out"));
    }

    [Fact]
    public async Task ModelInfer_TypedEveryDatatypeOnMulti_AnswersTypedAsTheJsonPath()
    {
        var request = TypedMulti();
        string[] typed = ["f32_out", "i64_sum", "i32_out", "flag_out", "text_out"];
        request.Outputs.Add(typed.Select(n => new ModelInferRequest.Types.InferRequestedOutputTensor { Name = n }));

        var response = await Client.ModelInferAsync(request);

        Assert.Empty(response.RawOutputContents);
        Assert.All(response.Outputs, o => Assert.NotNull(o.Contents));
        Assert.Equal(typed.Order(), response.Outputs.Select(o => o.Name).Order());
        await AssertSameAsJsonAsync(response, typed);
    }

    [Fact]
    public async Task ModelInfer_TypedWithAnFp16Output_WholeAnswerRaw()
    {
        var response = await Client.ModelInferAsync(TypedMulti());

        Assert.Equal(6, response.RawOutputContents.Count);
        Assert.All(response.Outputs, o => Assert.Null(o.Contents));
        await AssertSameAsJsonAsync(response, ["f32_out", "f16_out", "i64_sum", "i32_out", "flag_out", "text_out"]);
    }

    [Fact]
    public async Task ModelInfer_OutputsNamed_OnlyThoseAndIdEchoed()
    {
        var request = RawF32Echo("pick-me");
        request.Outputs.Add(new ModelInferRequest.Types.InferRequestedOutputTensor { Name = "y" });

        var response = await Client.ModelInferAsync(request);

        Assert.Equal("pick-me", response.Id);
        Assert.Equal(["y"], response.Outputs.Select(o => o.Name));
        Assert.Equal([1d, 2d, 3d], Values(response, "y"));
    }

    [Theory]
    [InlineData("no-such-model", null, StatusCode.NotFound, "unknown_model")]
    [InlineData("echo", "7", StatusCode.NotFound, "unknown_model")]
    public async Task ModelInfer_UnknownModelOrVersion_NotFoundAndChannelServes(string model, string? version, StatusCode status, string code)
    {
        var request = RawF32Echo("e1");
        request.ModelName = model;
        request.ModelVersion = version ?? string.Empty;

        var failure = await FailureAsync(() => Client.ModelInferAsync(request).ResponseAsync);

        Assert.Equal((status, code), (failure.Status, failure.Code));
        Assert.Contains(model == "echo" ? "7" : model, failure.Message, StringComparison.Ordinal);
        Assert.Equal([1d, 2d, 3d], Values(await Client.ModelInferAsync(RawF32Echo("after")), "y"));
    }

    public static TheoryData<string, string, string> Malformed => new()
    {
        { "raw f32 of 11 bytes", "invalid_input", "f32" },
        { "two raw contents for one input", "invalid_input", "raw_input_contents" },
        { "raw and typed contents", "invalid_input", "contents" },
        { "unknown datatype", "invalid_input", "COMPLEX" },
        { "typed count short of the shape", "invalid_input", "fp32_contents" },
        { "wrong datatype for the model", "invalid_input", "f32" },
        { "priority out of range", "bad_request", "priority" },
        { "no model name", "bad_request", "model_name" },
        { "BYTES length past the end", "invalid_input", "text" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public async Task ModelInfer_Malformed_InvalidArgumentNamingItAndChannelServes(string what, string code, string named)
    {
        var request = new ModelInferRequest { ModelName = "multi" };
        switch (what)
        {
            case "raw f32 of 11 bytes":
                request.Inputs.Add(Input("f32", "FP32", 1, 3));
                request.RawInputContents.Add(ByteString.CopyFrom(new byte[11]));
                break;
            case "two raw contents for one input":
                request.Inputs.Add(Input("f32", "FP32", 1, 3));
                request.RawInputContents.Add([Floats(1, 2, 3), Floats(1, 2, 3)]);
                break;
            case "raw and typed contents":
                var both = Input("f32", "FP32", 1, 3);
                both.Contents = new InferTensorContents();
                both.Contents.Fp32Contents.Add([1, 2, 3]);
                request.Inputs.Add(both);
                request.RawInputContents.Add(Floats(1, 2, 3));
                break;
            case "unknown datatype":
                request.Inputs.Add(Input("f32", "COMPLEX", 1, 3));
                request.RawInputContents.Add(Floats(1, 2, 3));
                break;
            case "typed count short of the shape":
                var shortOne = Input("f32", "FP32", 1, 3);
                shortOne.Contents = new InferTensorContents();
                shortOne.Contents.Fp32Contents.Add([1, 2]);
                request.Inputs.Add(shortOne);
                break;
            case "wrong datatype for the model":
                request.Inputs.Add(Input("f32", "INT64", 1, 3));
                request.RawInputContents.Add(Longs(1, 2, 3));
                break;
            case "priority out of range":
                request.Parameters.Add("priority", new InferParameter { Int64Param = 99 });
                break;
            case "no model name":
                request.ModelName = string.Empty;
                break;
            case "BYTES length past the end":
                request.Inputs.Add(Input("text", "BYTES", 1, 1));
                request.RawInputContents.Add(ByteString.CopyFrom([200, 0, 0, 0, (byte)'a']));
                break;
        }

        var failure = await FailureAsync(() => Client.ModelInferAsync(request).ResponseAsync);

        Assert.Equal((StatusCode.InvalidArgument, code), (failure.Status, failure.Code));
        Assert.Contains(named, failure.Message, StringComparison.Ordinal);
        Assert.Equal([1d, 2d, 3d], Values(await Client.ModelInferAsync(RawF32Echo("after")), "y"));
    }

    [Fact]
    public async Task ModelReadyAndMetadata_UnknownModel_NotFound()
    {
        var ready = await FailureAsync(() => Client.ModelReadyAsync(new ModelReadyRequest { Name = "no-such-model" }).ResponseAsync);
        var metadata = await FailureAsync(() => Client.ModelMetadataAsync(new ModelMetadataRequest { Name = "multi", Version = "9" }).ResponseAsync);

        Assert.Equal((StatusCode.NotFound, "unknown_model"), (ready.Status, ready.Code));
        Assert.Equal((StatusCode.NotFound, "unknown_model"), (metadata.Status, metadata.Code));
    }

    [Fact]
    public async Task ModelInfer_MessageOverMaxBinaryBytes_ResourceExhausted()
    {
        var request = RawF32Echo("big");
        request.RawInputContents[0] = ByteString.CopyFrom(new byte[(32 << 20) + 4]);
        request.Inputs[0].Shape[0] = ((32 << 20) + 4) / 4;

        var failure = await FailureAsync(() => Client.ModelInferAsync(request).ResponseAsync);

        Assert.Equal(StatusCode.ResourceExhausted, failure.Status);
        Assert.Equal([1d, 2d, 3d], Values(await Client.ModelInferAsync(RawF32Echo("after")), "y"));
    }

    [Fact]
    public async Task ModelInfer_TypedContentsDecodingPastMaxFrameBytes_ResourceExhaustedNamingTheLimit()
    {
        // Each INT64 of one byte on the wire is eight decoded: a message far under every limit, a tensor over the JSON one.
        var count = (FrontendFixture.MaxFrameBytes / 8) + 1;
        var request = new ModelInferRequest { ModelName = "echo", Id = "typed-big" };
        var input = Input("y", "INT64", count);
        input.Contents = new InferTensorContents();
        input.Contents.Int64Contents.Add(Enumerable.Repeat(1L, count));
        request.Inputs.Add(input);
        Assert.True(request.CalculateSize() < FrontendFixture.MaxFrameBytes);

        var failure = await FailureAsync(() => Client.ModelInferAsync(request).ResponseAsync);

        Assert.Equal((StatusCode.ResourceExhausted, "payload_too_large"), (failure.Status, failure.Code));
        Assert.Contains(FrontendFixture.MaxFrameBytes.ToString(System.Globalization.CultureInfo.InvariantCulture), failure.Message, StringComparison.Ordinal);
        Assert.Contains("raw_input_contents", failure.Message, StringComparison.Ordinal);
        input.Shape[0] = count - 1;
        input.Contents.Int64Contents.RemoveAt(0);
        Assert.Equal(count - 1, (await Client.ModelInferAsync(request)).Outputs.Single().Contents.Int64Contents.Count);
    }

    [Fact]
    public async Task ModelInfer_GrpcDeadlineShorterThanTheQueue_GridRefusesAtAdmission()
    {
        // slow-grpc runs one request at a time for 1.5 s: once one batch has run, the batcher knows it.
        var request = RawF32Echo("warm");
        request.ModelName = "slow-grpc";
        await Client.ModelInferAsync(request);
        using var busy = Client.ModelInferAsync(request);
        await Eventually.UntilAsync(() => fixture.Batcher("slow-grpc").GetStatusAsync(), s => s.Running == 1, what: "a request occupies the device");

        // No timeout_ms: only the call's deadline tells the grid that waiting 1.5 s is too long.
        var failure = await Assert.ThrowsAsync<RpcException>(() => Client.ModelInferAsync(request, deadline: DateTime.UtcNow.AddMilliseconds(300)).ResponseAsync);

        Assert.Equal((StatusCode.Unavailable, "overloaded"), (failure.StatusCode, failure.Trailers.GetValue("streaminfer-code")));
        Assert.True(int.Parse(failure.Trailers.GetValue("retry-after-ms")!, System.Globalization.CultureInfo.InvariantCulture) > 0);
        await busy.ResponseAsync;
    }

    /// <summary>The <c>echo</c> model with one raw FP32 input <c>y</c> = [1, 2, 3].</summary>
    internal static ModelInferRequest RawF32Echo(string id)
    {
        var request = new ModelInferRequest { ModelName = "echo", Id = id };
        request.Inputs.Add(Input("y", "FP32", 3));
        request.RawInputContents.Add(Floats(1, 2, 3));
        return request;
    }

    /// <summary>The multi model's inputs, every one typed (FP16 in fp32_contents).</summary>
    private static ModelInferRequest TypedMulti()
    {
        var request = new ModelInferRequest { ModelName = "multi" };
        static ModelInferRequest.Types.InferInputTensor With(ModelInferRequest.Types.InferInputTensor input, Action<InferTensorContents> fill)
        {
            input.Contents = new InferTensorContents();
            fill(input.Contents);
            return input;
        }

        request.Inputs.Add(With(Input("f32", "FP32", 2, 3), c => c.Fp32Contents.Add(F32)));
        request.Inputs.Add(With(Input("f16", "FP16", 2, 2), c => c.Fp32Contents.Add(F16)));
        request.Inputs.Add(With(Input("i64", "INT64", 2, 2), c => c.Int64Contents.Add(I64)));
        request.Inputs.Add(With(Input("i32", "INT32", 2, 2), c => c.IntContents.Add(I32)));
        request.Inputs.Add(With(Input("flag", "BOOL", 2, 2), c => c.BoolContents.Add(Flag)));
        request.Inputs.Add(With(Input("text", "BYTES", 2, 1), c => c.BytesContents.Add(Text.Select(ByteString.CopyFromUtf8))));
        return request;
    }

    /// <summary>Each of <paramref name="names"/> has the datatype, shape and values the JSON KServe path answers.</summary>
    private async Task AssertSameAsJsonAsync(ModelInferResponse response, string[] names)
    {
        using var http = await fixture.Http.PostAsJsonAsync("/v2/models/multi/infer", new
        {
            inputs = new object[]
            {
                new { name = "f32", datatype = "FP32", shape = new[] { 2, 3 }, data = F32 },
                new { name = "f16", datatype = "FP16", shape = new[] { 2, 2 }, data = F16 },
                new { name = "i64", datatype = "INT64", shape = new[] { 2, 2 }, data = I64 },
                new { name = "i32", datatype = "INT32", shape = new[] { 2, 2 }, data = I32 },
                new { name = "flag", datatype = "BOOL", shape = new[] { 2, 2 }, data = Flag },
                new { name = "text", datatype = "BYTES", shape = new[] { 2, 1 }, data = Text },
            },
        });
        var json = (await http.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("outputs").EnumerateArray().ToDictionary(o => o.GetProperty("name").GetString()!);
        foreach (var name in names)
        {
            var output = response.Outputs.Single(o => o.Name == name);
            Assert.Equal(json[name].GetProperty("datatype").GetString(), output.Datatype);
            Assert.Equal(json[name].GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()), output.Shape);
            Assert.Equal(JsonValues(json[name]), Values(response, name));
        }
    }
}
