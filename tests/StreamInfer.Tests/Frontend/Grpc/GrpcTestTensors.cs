using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using StreamInfer.Frontend.Grpc.V2;

namespace StreamInfer.Tests.Frontend.Grpc;

/// <summary>What the gRPC tests share: a client over a real h2c channel, tensors as raw bytes or typed contents, and
/// answers read back as plain values to compare with the JSON path's.</summary>
internal static class GrpcTestTensors
{
    public static GrpcChannel Channel(Uri address) => GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxReceiveMessageSize = 64 << 20 });

    public static ModelInferRequest.Types.InferInputTensor Input(string name, string datatype, params long[] shape)
    {
        var input = new ModelInferRequest.Types.InferInputTensor { Name = name, Datatype = datatype };
        input.Shape.AddRange(shape);
        return input;
    }

    public static ByteString Floats(params float[] values) => Raw(values.Length, 4, (span, i) => BinaryPrimitives.WriteSingleLittleEndian(span, values[i]));

    public static ByteString Halves(params float[] values) => Raw(values.Length, 2, (span, i) => BinaryPrimitives.WriteHalfLittleEndian(span, (Half)values[i]));

    public static ByteString Longs(params long[] values) => Raw(values.Length, 8, (span, i) => BinaryPrimitives.WriteInt64LittleEndian(span, values[i]));

    public static ByteString Ints(params int[] values) => Raw(values.Length, 4, (span, i) => BinaryPrimitives.WriteInt32LittleEndian(span, values[i]));

    public static ByteString Bools(params bool[] values) => ByteString.CopyFrom([.. values.Select(v => v ? (byte)1 : (byte)0)]);

    public static ByteString Strings(params string[] values)
    {
        var bytes = new List<byte>();
        foreach (var value in values)
        {
            var utf8 = Encoding.UTF8.GetBytes(value);
            bytes.AddRange(BitConverter.GetBytes(utf8.Length));
            bytes.AddRange(utf8);
        }

        return ByteString.CopyFrom([.. bytes]);
    }

    /// <summary>An output's elements as doubles, bools or strings, from its raw bytes or its typed contents.</summary>
    public static object[] Values(ModelInferResponse response, string name)
    {
        var index = response.Outputs.Select(o => o.Name).ToList().IndexOf(name);
        Assert.True(index >= 0, $"no output '{name}' in the answer");
        var output = response.Outputs[index];
        if (response.RawOutputContents.Count > 0)
        {
            Assert.Null(output.Contents);
            return RawValues(output.Datatype, response.RawOutputContents[index].Span);
        }

        var c = output.Contents;
        return output.Datatype switch
        {
            "FP32" => [.. c.Fp32Contents.Select(v => (object)(double)v)],
            "FP64" => [.. c.Fp64Contents.Select(v => (object)v)],
            "INT64" => [.. c.Int64Contents.Select(v => (object)(double)v)],
            "INT32" or "INT16" or "INT8" => [.. c.IntContents.Select(v => (object)(double)v)],
            "UINT8" => [.. c.UintContents.Select(v => (object)(double)v)],
            "BOOL" => [.. c.BoolContents.Select(v => (object)v)],
            "BYTES" => [.. c.BytesContents.Select(v => (object)v.ToStringUtf8())],
            _ => throw new InvalidOperationException($"no typed contents for {output.Datatype}"),
        };
    }

    /// <summary>A JSON output's <c>data</c> as the same plain values.</summary>
    public static object[] JsonValues(JsonElement output) => [.. output.GetProperty("data").EnumerateArray().Select(e => e.ValueKind switch
    {
        JsonValueKind.True or JsonValueKind.False => (object)e.GetBoolean(),
        JsonValueKind.String => e.GetString()!,
        _ => e.GetDouble(),
    })];

    /// <summary>The call's failure: its status code and StreamInfer's code from the trailers.</summary>
    public static async Task<(StatusCode Status, string? Code, string Message)> FailureAsync(Func<Task> call)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        return (ex.StatusCode, ex.Trailers.GetValue("streaminfer-code"), ex.Status.Detail);
    }

    private static object[] RawValues(string datatype, ReadOnlySpan<byte> bytes)
    {
        var values = new List<object>();
        switch (datatype)
        {
            case "FP32":
                for (var i = 0; i < bytes.Length; i += 4)
                {
                    values.Add((double)BinaryPrimitives.ReadSingleLittleEndian(bytes[i..]));
                }

                break;
            case "FP16":
                for (var i = 0; i < bytes.Length; i += 2)
                {
                    values.Add((double)BinaryPrimitives.ReadHalfLittleEndian(bytes[i..]));
                }

                break;
            case "INT64":
                for (var i = 0; i < bytes.Length; i += 8)
                {
                    values.Add((double)BinaryPrimitives.ReadInt64LittleEndian(bytes[i..]));
                }

                break;
            case "INT32":
                for (var i = 0; i < bytes.Length; i += 4)
                {
                    values.Add((double)BinaryPrimitives.ReadInt32LittleEndian(bytes[i..]));
                }

                break;
            case "BOOL":
                foreach (var b in bytes)
                {
                    values.Add(b != 0);
                }

                break;
            case "BYTES":
                for (var i = 0; i < bytes.Length;)
                {
                    var length = BinaryPrimitives.ReadInt32LittleEndian(bytes[i..]);
                    values.Add(Encoding.UTF8.GetString(bytes.Slice(i + 4, length)));
                    i += 4 + length;
                }

                break;
            default:
                throw new InvalidOperationException($"no raw reader for {datatype}");
        }

        return [.. values];
    }

    private static ByteString Raw(int count, int size, SpanAction write)
    {
        var bytes = new byte[count * size];
        for (var i = 0; i < count; i++)
        {
            write(bytes.AsSpan(i * size, size), i);
        }

        return ByteString.CopyFrom(bytes);
    }

    private delegate void SpanAction(Span<byte> span, int index);
}
