using System.Buffers;
using System.Globalization;
using System.Text.Json;
using StreamInfer.Frontend.Http;
using StreamInfer.Frontend.Protocol;

namespace StreamInfer.Frontend.KServe;

/// <summary>
/// The answer to a KServe v2 <c>infer</c>: <c>{model_name, model_version, id?, outputs, parameters?, timing}</c> as JSON
/// (<c>parameters</c> only for a sequence's window, <see cref="WindowParameters"/>); or, when some output is asked for
/// as binary data, that JSON as a header (its length in <c>Inference-Header-Content-Length</c>) followed by the binary
/// outputs' raw bytes in output order, each carrying <c>"parameters": {"binary_data_size"}</c> in the header instead of
/// <c>data</c>.
/// </summary>
internal static class KServeResponse
{
    /// <summary>The answer carrying the outputs <paramref name="selection"/> asks for, or <c>invalid_input</c> naming
    /// one the model does not have.</summary>
    public static IResult Create(InferResult result, string? id, OutputSelection selection, string model)
    {
        var outputs = new List<(NamedTensor Output, bool Binary)>(result.Outputs.Length);
        if (selection.Named is null)
        {
            outputs.AddRange(result.Outputs.Select(o => (o, selection.BinaryByDefault)));
        }
        else
        {
            foreach (var requested in selection.Named)
            {
                if (result.Outputs.FirstOrDefault(o => o.Name == requested.Name) is not { } output)
                {
                    return KServeEndpoints.Error(new InferError(ErrorCode.InvalidInput, $"model '{model}' has no output '{requested.Name}' (it has {string.Join(", ", result.Outputs.Select(o => o.Name))})."), id);
                }

                outputs.Add((output, requested.Binary ?? selection.BinaryByDefault));
            }
        }

        if (!outputs.Exists(o => o.Binary))
        {
            return JsonBody.Ok(w => WriteHeader(w, result, id, outputs, null));
        }

        var sizes = outputs.Select(o => o.Binary ? o.Output.Tensor.RawByteSize() : 0).ToArray();
        var header = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(header, FrameWriter.Options))
        {
            WriteHeader(writer, result, id, outputs, sizes);
        }

        return new BinaryAnswer(header.WrittenMemory, [.. outputs.Where(o => o.Binary).Select(o => o.Output.Tensor)], sizes.Sum());
    }

    private static void WriteHeader(Utf8JsonWriter w, InferResult result, string? id, List<(NamedTensor Output, bool Binary)> outputs, long[]? sizes)
    {
        w.WriteStartObject();
        w.WriteString("model_name", result.Model);
        w.WriteString("model_version", result.ModelVersion);
        if (id is not null)
        {
            w.WriteString("id", id);
        }

        w.WriteStartArray("outputs");
        for (var i = 0; i < outputs.Count; i++)
        {
            var (output, binary) = outputs[i];
            w.WriteStartObject();
            w.WriteString("name", output.Name);
            w.WriteString("datatype", output.Tensor.ElementType.ToKServe());
            if (binary)
            {
                w.WriteStartArray("shape");
                foreach (var d in output.Tensor.Shape)
                {
                    w.WriteNumberValue(d);
                }

                w.WriteEndArray();
                w.WriteStartObject("parameters");
                w.WriteNumber("binary_data_size", sizes![i]);
                w.WriteEndObject();
            }
            else
            {
                FrameWriter.WriteShapeAndData(w, output.Tensor);
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        if (result.Window is { } window)
        {
            w.WriteStartObject("parameters");
            WindowParameters.Write(w, window);
            w.WriteEndObject();
        }

        FrameWriter.WriteTiming(w, result.Timing);
        w.WriteEndObject();
    }

    /// <summary>
    /// The JSON header, then each binary output copied once from the result into the response's pipe, flushed output by
    /// output so that the pipe's back-pressure holds a slow reader.
    /// </summary>
    private sealed class BinaryAnswer(ReadOnlyMemory<byte> header, Tensor[] binary, long binaryBytes) : IResult
    {
        public async Task ExecuteAsync(HttpContext context)
        {
            var response = context.Response;
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "application/octet-stream";
            response.Headers[KServeBody.HeaderName] = header.Length.ToString(CultureInfo.InvariantCulture);
            response.ContentLength = header.Length + binaryBytes;
            var body = response.BodyWriter;
            body.Write(header.Span);
            foreach (var tensor in binary)
            {
                RawTensors.Write(tensor, body);
                var flushed = await body.FlushAsync(context.RequestAborted);
                if (flushed.IsCompleted || flushed.IsCanceled)
                {
                    return;
                }
            }
        }
    }
}
