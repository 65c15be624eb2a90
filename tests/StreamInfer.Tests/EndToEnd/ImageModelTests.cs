using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Tests.Frontend.Grpc;
using StreamInfer.Tests.Frontend.KServe;
using StreamInfer.Tests.Frontend.WebSockets;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.EndToEnd;

/// <summary>
/// A batch of 224×224 RGB images, in binary, to a convolutional model in the repository, by each binary transport as
/// its clients speak it: the KServe v2 binary tensor data extension over HTTP, KServe v2 gRPC with
/// <c>raw_input_contents</c>, and binary WebSocket frames. Every answer equals bare ONNX Runtime's on the same file.
/// The grid runs with its shipped size limits (a batch of four such images is 2.4 MB, past the JSON limit).
/// </summary>
public sealed class ImageModelTests : IAsyncLifetime
{
    private const int Images = 4;
    private static readonly long[] Shape = [Images, 3, ImageClassifier.Size, ImageClassifier.Size];

    private readonly string _repository = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
    private readonly float[] _images = ImageClassifier.Images(Images, seed: 7);
    private WebApplication _app = null!;
    private Uri _http = null!;
    private Uri _grpc = null!;
    private float[] _expected = [];

    private byte[] Raw => MemoryMarshal.AsBytes(_images.AsSpan()).ToArray();

    public async Task InitializeAsync()
    {
        var path = ImageClassifier.Write(_repository);
        using (var session = new InferenceSession(path))
        {
            using var input = OrtValue.CreateTensorValueFromMemory(_images, Shape);
            using var outputs = session.Run(new RunOptions(), [ImageClassifier.Input], [input], [ImageClassifier.Output]);
            _expected = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }

        _grpc = new Uri($"http://127.0.0.1:{Ports.FreeText()}");
        (_app, _http) = await FrontendFixture.StartGridAsync(FrontendFixture.IsolatedSettings(
            extra: [("StreamInfer:Repository:Path", _repository), ("StreamInfer:Frontend:GrpcUrl", _grpc.ToString())]));
    }

    public async Task DisposeAsync()
    {
        await _app.DisposeAsync();
        Directory.Delete(_repository, recursive: true);
    }

    [Fact]
    public async Task KServeBinaryExtension_BatchOfImages_LogitsOfBareOnnxRuntime()
    {
        using var http = new HttpClient { BaseAddress = _http, Timeout = TimeSpan.FromSeconds(60) };
        var header = new JsonObject
        {
            ["inputs"] = new JsonArray(BinaryTensorClient.Input(ImageClassifier.Input, "FP32", Shape, Raw)),
            ["outputs"] = new JsonArray(new JsonObject { ["name"] = ImageClassifier.Output, ["parameters"] = new JsonObject { ["binary_data"] = true } }),
        };

        using var response = await http.SendAsync(BinaryTensorClient.Request(ImageClassifier.ModelName, header, Raw));
        var answer = await BinaryTensorClient.ReadAsync(response);

        Assert.True(response.IsSuccessStatusCode, answer.Header.ToString());
        var logits = answer.Outputs[ImageClassifier.Output];
        Assert.Equal([Images, ImageClassifier.Classes], logits.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        AssertLogits(answer.Binary[ImageClassifier.Output]);
    }

    [Fact]
    public async Task GrpcModelInfer_RawBatchOfImages_LogitsOfBareOnnxRuntime()
    {
        using var channel = GrpcTestTensors.Channel(_grpc);
        var request = new ModelInferRequest { ModelName = ImageClassifier.ModelName, Id = "images" };
        request.Inputs.Add(GrpcTestTensors.Input(ImageClassifier.Input, "FP32", Shape));
        request.RawInputContents.Add(ByteString.CopyFrom(Raw));

        var response = await new GRPCInferenceService.GRPCInferenceServiceClient(channel).ModelInferAsync(request, deadline: DateTime.UtcNow.AddSeconds(60));

        var output = Assert.Single(response.Outputs);
        Assert.Equal(ImageClassifier.Output, output.Name);
        Assert.Equal([Images, ImageClassifier.Classes], output.Shape);
        AssertLogits(Assert.Single(response.RawOutputContents).ToByteArray());
    }

    [Fact]
    public async Task WebSocketBinaryFrame_BatchOfImages_LogitsOfBareOnnxRuntime()
    {
        await using var client = await BinaryWsClient.ConnectAsync(new UriBuilder(_http) { Scheme = "ws", Path = "/ws" }.Uri);
        var header = new Dictionary<string, object>
        {
            ["type"] = "infer",
            ["id"] = "images",
            ["model"] = ImageClassifier.ModelName,
            ["inputs"] = new Dictionary<string, object>
            {
                [ImageClassifier.Input] = new { dtype = "float32", shape = Shape, bytes = new[] { 0, Raw.Length } },
            },
        };

        await client.SendBinaryAsync(BinaryFrames.Build(header, Raw));
        var answer = await client.NextAsync(TimeSpan.FromSeconds(60));

        Assert.Equal("result", answer.Header.GetProperty("type").GetString());
        Assert.Equal([Images, ImageClassifier.Classes], answer.Header.GetProperty("outputs").GetProperty(ImageClassifier.Output).GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        AssertLogits(answer.Output(ImageClassifier.Output));
    }

    private void AssertLogits(byte[] raw)
    {
        var logits = MemoryMarshal.Cast<byte, float>(raw).ToArray();
        Assert.Equal(_expected.Length, logits.Length);
        for (var i = 0; i < logits.Length; i++)
        {
            // The same graph on the same inputs; only the thread split of a convolution may round differently.
            Assert.True(Math.Abs(logits[i] - _expected[i]) <= 1e-5f * Math.Max(1f, Math.Abs(_expected[i])), $"logit {i}: {logits[i]} against bare {_expected[i]}");
        }
    }
}
