using System.Buffers.Binary;
using System.Text;
using Google.Protobuf;
using StreamInfer.Frontend.Grpc;
using StreamInfer.Frontend.Grpc.V2;
using StreamInfer.Frontend.KServe;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Tests.Frontend.Protocol;

/// <summary>
/// How each transport reads a request's stateful sequence into <see cref="InferRequest.Sequence"/>: the top level of an
/// <c>infer</c> frame (text or binary header) and of a <c>/predict</c> body, KServe's <c>parameters</c> over HTTP and
/// gRPC (where an integer id is its decimal text). Every bad value is refused with a message naming the field.
/// </summary>
public sealed class SequenceFieldsTests
{
    private const string Inputs = "\"inputs\":{\"x\":{\"dtype\":\"float32\",\"shape\":[1],\"data\":[1]}}";

    [Fact]
    public void Parse_JsonFrameWithSequence_ReadsIdStartEndUnordered()
    {
        var frame = Parse($$"""{"type":"infer","id":"r1","model":"m",{{Inputs}},"sequence_id":"mic-1","sequence_start":true,"sequence_end":false}""");

        var infer = Assert.IsType<ClientFrame.Infer>(frame);
        Assert.Equal(new SequenceControl("mic-1", Start: true, End: false, Ordered: false), infer.Sequence);
        Assert.Equal(new SequenceControl("mic-1", true, false, Ordered: true), SequenceFields.Ordered(infer).Sequence);
    }

    [Fact]
    public void Parse_JsonFrameWithoutSequence_NoSequence()
    {
        var infer = Assert.IsType<ClientFrame.Infer>(Parse($$"""{"type":"infer","id":"r1","model":"m",{{Inputs}}}"""));

        Assert.Null(infer.Sequence);
        Assert.Same(infer, SequenceFields.Ordered(infer));
    }

    [Fact]
    public void ParseBinary_HeaderWithSequence_ReadsIt()
    {
        var header = Encoding.UTF8.GetBytes("""{"type":"infer","id":"b1","model":"m","inputs":{"x":{"dtype":"float32","shape":[1],"bytes":[0,4]}},"sequence_id":"s","sequence_end":true}""");
        var message = new byte[4 + header.Length + 4];
        BinaryPrimitives.WriteUInt32LittleEndian(message, (uint)header.Length);
        header.CopyTo(message, 4);

        var infer = Assert.IsType<ClientFrame.Infer>(RequestParser.ParseBinary(message, 64 * 1024));

        Assert.Equal(new SequenceControl("s", Start: false, End: true), infer.Sequence);
    }

    [Fact]
    public void Parse_PredictBodyWithSequence_ReadsIt()
    {
        var body = Encoding.UTF8.GetBytes($$"""{"model":"m",{{Inputs}},"sequence_id":"p","sequence_start":true,"sequence_end":true}""");

        var infer = Assert.IsType<ClientFrame.Infer>(RequestParser.Parse(body, defaultType: "infer", requireId: false));

        Assert.Equal(new SequenceControl("p", Start: true, End: true), infer.Sequence);
    }

    [Theory]
    [InlineData("\"sequence_id\":\"\"", "'sequence_id' must be")]
    [InlineData("\"sequence_id\":7", "'sequence_id' must be")]
    [InlineData("\"sequence_id\":null", "'sequence_id' must be")]
    [InlineData("\"sequence_id\":\"s\",\"sequence_start\":\"yes\"", "'sequence_start' must be true or false")]
    [InlineData("\"sequence_id\":\"s\",\"sequence_end\":1", "'sequence_end' must be true or false")]
    [InlineData("\"sequence_start\":true", "'sequence_start' needs a 'sequence_id'")]
    [InlineData("\"sequence_end\":true", "'sequence_end' needs a 'sequence_id'")]
    public void Parse_BadSequenceField_BadRequestNamingIt(string fields, string message)
    {
        var invalid = Assert.IsType<ClientFrame.Invalid>(Parse($$"""{"type":"infer","id":"r9","model":"m",{{Inputs}},{{fields}}}"""));

        Assert.Equal(ErrorCode.BadRequest, invalid.Code);
        Assert.Equal("r9", invalid.Id);
        Assert.Contains(message, invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_SequenceIdOfMaxLength_TakenOneMoreRefused()
    {
        var longest = new string('s', SequenceFields.MaxIdLength);

        Assert.Equal(longest, Assert.IsType<ClientFrame.Infer>(Parse($$"""{"type":"infer","id":"r","model":"m",{{Inputs}},"sequence_id":"{{longest}}"}""")).Sequence?.Id);
        Assert.IsType<ClientFrame.Invalid>(Parse($$"""{"type":"infer","id":"r","model":"m",{{Inputs}},"sequence_id":"{{longest}}s"}"""));
    }

    [Theory]
    [InlineData("\"sequence_id\":\"abc\"", "abc")]
    [InlineData("\"sequence_id\":42", "42")]
    [InlineData("\"sequence_id\":18446744073709551615", "18446744073709551615")]
    public void KServeParse_SequenceParameters_StringOrIntegerIdAsText(string id, string expected)
    {
        var body = Encoding.UTF8.GetBytes($$$"""{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"parameters":{{{{id}}},"sequence_start":true}}""");

        var (request, error) = KServeRequest.Parse(body, null, "m");

        Assert.Null(error);
        Assert.Equal(new SequenceControl(expected, Start: true, End: false), request!.Infer.Sequence);
    }

    [Theory]
    [InlineData("\"sequence_id\":0", "'parameters.sequence_id' must be")]
    [InlineData("\"sequence_id\":-3", "'parameters.sequence_id' must be")]
    [InlineData("\"sequence_id\":1.5", "'parameters.sequence_id' must be")]
    [InlineData("\"sequence_id\":\"s\",\"sequence_end\":\"true\"", "'parameters.sequence_end' must be true or false")]
    [InlineData("\"sequence_end\":true", "'parameters.sequence_end' needs a 'parameters.sequence_id'")]
    public void KServeParse_BadSequenceParameter_BadRequestNamingIt(string fields, string message)
    {
        var body = Encoding.UTF8.GetBytes($$$"""{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"parameters":{{{{fields}}}}}""");

        var (request, error) = KServeRequest.Parse(body, null, "m");

        Assert.Null(request);
        Assert.Equal(ErrorCode.BadRequest, error!.Code);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GrpcRead_SequenceParameters_IntegerIdAsTextAndFlags()
    {
        var message = GrpcRequestWith(("sequence_id", new InferParameter { Int64Param = 1234 }), ("sequence_start", new InferParameter { BoolParam = true }));

        var (request, error) = Read(message, null, 1 << 20);

        Assert.Null(error);
        Assert.Equal(new SequenceControl("1234", Start: true, End: false), request!.ToInfer(decoder: false).Sequence);
        Assert.Equal("1234", SequenceKey(message));
    }

    [Fact]
    public void GrpcRead_StringAndUnsignedIds_ReadAsText()
    {
        var text = GrpcRequestWith(("sequence_id", new InferParameter { StringParam = "mic" }), ("sequence_end", new InferParameter { BoolParam = true }));
        var unsigned = GrpcRequestWith(("sequence_id", new InferParameter { Uint64Param = ulong.MaxValue }));

        Assert.Equal(new SequenceControl("mic", Start: false, End: true), Read(text, null, 1 << 20).Request!.Sequence);
        Assert.Equal(ulong.MaxValue.ToString(System.Globalization.CultureInfo.InvariantCulture), Read(unsigned, null, 1 << 20).Request!.Sequence!.Id);
        Assert.Null(Read(GrpcRequestWith(), null, 1 << 20).Request!.Sequence);
        Assert.Null(SequenceKey(GrpcRequestWith()));
    }

    [Theory]
    [InlineData("sequence_id", 0L, "parameter 'sequence_id' must be")]
    [InlineData("sequence_id", null, "parameter 'sequence_id' must be")]
    [InlineData("sequence_start", 1L, "parameter 'sequence_start' must be a bool_param")]
    public void GrpcRead_BadSequenceParameter_BadRequestNamingIt(string name, long? value, string expected)
    {
        var parameter = value is { } n ? new InferParameter { Int64Param = n } : new InferParameter { DoubleParam = 1.5 };
        var message = GrpcRequestWith(("sequence_id", new InferParameter { StringParam = "s" }), (name, parameter));

        var (request, error) = Read(message, null, 1 << 20);

        Assert.Null(request);
        Assert.Equal(ErrorCode.BadRequest, error!.Code);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GrpcRead_EndWithoutId_BadRequest()
    {
        var (_, error) = Read(GrpcRequestWith(("sequence_end", new InferParameter { BoolParam = true })), null, 1 << 20);

        Assert.Equal(ErrorCode.BadRequest, error!.Code);
        Assert.Contains("'sequence_end' needs a 'sequence_id'", error.Message, StringComparison.Ordinal);
    }

    private static ClientFrame Parse(string json) => RequestParser.Parse(Encoding.UTF8.GetBytes(json));

    // The tests compile a client of their own from the same .proto: the frontend's message is made from its bytes.
    private static IMessage AsFrontends(ModelInferRequest message)
    {
        var type = typeof(GrpcRequest).Assembly.GetType(typeof(ModelInferRequest).FullName!)!;
        return ((MessageParser)type.GetProperty("Parser")!.GetValue(null)!).ParseFrom(message.ToByteArray());
    }

    private static (GrpcRequest? Request, InferError? Error) Read(ModelInferRequest message, TimeSpan? deadline, int maxTypedBytes)
        => ((GrpcRequest?, InferError?))typeof(GrpcRequest).GetMethod(nameof(GrpcRequest.Read))!.Invoke(null, [AsFrontends(message), deadline, maxTypedBytes])!;

    private static string? SequenceKey(ModelInferRequest message)
        => (string?)typeof(GrpcRequest).GetMethod(nameof(GrpcRequest.SequenceKey))!.Invoke(null, [AsFrontends(message)]);

    private static ModelInferRequest GrpcRequestWith(params (string Name, InferParameter Value)[] parameters)
    {
        var request = new ModelInferRequest { ModelName = "m", Id = "g1" };
        var input = new ModelInferRequest.Types.InferInputTensor { Name = "x", Datatype = "FP32", Contents = new InferTensorContents() };
        input.Shape.Add(1);
        input.Contents.Fp32Contents.Add(1f);
        request.Inputs.Add(input);
        foreach (var (name, value) in parameters)
        {
            request.Parameters[name] = value;
        }

        return request;
    }
}
