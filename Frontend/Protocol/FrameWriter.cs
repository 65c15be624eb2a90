using System.Buffers;
using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace StreamInfer.Frontend.Protocol;

/// <summary>Writes server frames as UTF-8 JSON.</summary>
internal static partial class FrameWriter
{
    /// <summary>
    /// Text (model outputs, messages that quote names) is written as is rather than \u-escaped: these are API bodies,
    /// never embedded in HTML, and clients and people read them.
    /// </summary>
    public static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static byte[] Result(string id, InferResult result) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("type", "result");
        WriteResultBody(w, id, result);
        w.WriteEndObject();
    });

    /// <summary>
    /// A binary <c>result</c> message: the header's length (4 bytes, little-endian), the header (a <c>result</c> frame
    /// whose outputs give <c>"bytes": [offset, length]</c> in the payload in place of <c>data</c>), then the payload:
    /// every output in the layout of <see cref="RawTensors"/>, copied once, straight from the tensor into one pooled
    /// buffer sized exactly. The caller returns the buffer once the message is sent.
    /// </summary>
    public static RentedBytes BinaryResult(string id, InferResult result)
    {
        var cached = Begin();
        var w = cached.Writer;
        w.WriteStartObject();
        w.WriteString("type", "result");
        w.WriteString("id", id);
        w.WriteString("model", result.Model);
        w.WriteString("model_version", result.ModelVersion);
        w.WriteStartObject("outputs");
        long offset = 0;
        foreach (var output in result.Outputs)
        {
            var size = output.Tensor.RawByteSize();
            w.WriteStartObject(output.Name);
            w.WriteString("dtype", output.Tensor.ElementType.ToWire());
            WriteShape(w, output.Tensor);
            w.WriteStartArray("bytes");
            w.WriteNumberValue(offset);
            w.WriteNumberValue(size);
            w.WriteEndArray();
            w.WriteEndObject();
            offset += size;
        }

        w.WriteEndObject();
        WriteTiming(w, result.Timing);
        if (result.Window is { } window)
        {
            WriteWindow(w, window);
        }

        w.WriteEndObject();
        w.Flush();
        var header = cached.Buffer.WrittenSpan;
        var frame = new RentedBytes(checked(4 + header.Length + (int)offset));
        BinaryPrimitives.WriteInt32LittleEndian(frame.GetSpan(4), header.Length);
        frame.Advance(4);
        frame.Write(header);
        foreach (var output in result.Outputs)
        {
            RawTensors.Write(output.Tensor, frame);
        }

        Release(cached);
        return frame;
    }

    public static byte[] Error(string? id, InferError error) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("type", "error");
        if (id is not null)
        {
            w.WriteString("id", id);
        }

        WriteErrorFields(w, error);
        w.WriteEndObject();
    });

    /// <summary>A <c>token</c> frame: one generated token of a streaming text request.</summary>
    public static byte[] Token(string id, GeneratedToken token) => Write((id, token), static (w, s) =>
    {
        w.WriteStartObject();
        w.WriteString("type", "token");
        w.WriteString("id", s.id);
        w.WriteNumber("index", s.token.Index);
        w.WriteString("text", s.token.Text);
        w.WriteNumber("token_id", s.token.TokenId);
        w.WriteEndObject();
    });

    /// <summary>
    /// A <c>done</c> frame: the end of a text request. <paramref name="text"/> is the text not already sent in
    /// <c>token</c> frames (all of it when the request did not stream); omitted when empty.
    /// </summary>
    public static byte[] Done(string id, string finishReason, int promptTokens, int completionTokens, string? modelVersion, string text, GenerationDone? done) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("type", "done");
        w.WriteString("id", id);
        w.WriteString("finish_reason", finishReason);
        if (text.Length > 0)
        {
            w.WriteString("text", text);
        }

        WriteUsage(w, promptTokens, completionTokens);
        if (modelVersion is not null)
        {
            w.WriteString("model_version", modelVersion);
        }

        if (done is not null)
        {
            WriteGenerationTiming(w, done);
        }

        w.WriteEndObject();
    });

    /// <summary>A generation's <c>usage</c> (OpenAI's names), shared by the <c>done</c> frame and the HTTP answers.</summary>
    public static void WriteUsage(Utf8JsonWriter w, int promptTokens, int completionTokens)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", promptTokens);
        w.WriteNumber("completion_tokens", completionTokens);
        w.WriteNumber("total_tokens", promptTokens + completionTokens);
        w.WriteEndObject();
    }

    /// <summary>A generation's <c>timing</c>: time queued, and time to its first token.</summary>
    public static void WriteGenerationTiming(Utf8JsonWriter w, GenerationDone done)
    {
        w.WriteStartObject("timing");
        w.WriteNumber("queue_ms", Math.Round(done.QueueMs, 3));
        w.WriteNumber("time_to_first_token_ms", Math.Round(done.TimeToFirstTokenMs, 3));
        w.WriteEndObject();
    }

    /// <summary>Sets <c>Retry-After</c> (whole seconds, at least 1) for an error that carries <c>retry_after_ms</c>.</summary>
    public static void SetRetryAfter(HttpResponse response, InferError error)
    {
        if (error.RetryAfterMs is { } retryMs)
        {
            response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryMs / 1000.0)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    /// <summary>
    /// A <c>slow_consumer</c> warning: the client's backlog, or its connection's send queue, is 80% full;
    /// <paramref name="unit"/> says what <paramref name="backlog"/> and <paramref name="capacity"/> count (requests,
    /// frames or bytes).
    /// </summary>
    public static byte[] Warning(long backlog, long capacity, string unit, string message) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("type", "warning");
        w.WriteString("code", "slow_consumer");
        w.WriteString("message", message);
        w.WriteNumber("backlog", backlog);
        w.WriteNumber("capacity", capacity);
        w.WriteString("unit", unit);
        w.WriteEndObject();
    });

    /// <summary>
    /// The frontend is shutting down: requests in flight finish (for up to <paramref name="drainMs"/>), new ones are
    /// refused, then the connection is closed (1001); reconnect, to another frontend.
    /// </summary>
    public static byte[] Draining(long drainMs, string message) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("type", "warning");
        w.WriteString("code", "draining");
        w.WriteString("message", message);
        w.WriteNumber("drain_ms", drainMs);
        w.WriteEndObject();
    });

    /// <summary>The fields of a result, shared by the WebSocket frame and the HTTP response.</summary>
    public static void WriteResultBody(Utf8JsonWriter w, string id, InferResult result)
    {
        w.WriteString("id", id);
        w.WriteString("model", result.Model);
        w.WriteString("model_version", result.ModelVersion);
        w.WriteStartObject("outputs");
        foreach (var output in result.Outputs)
        {
            w.WritePropertyName(output.Name);
            WriteTensor(w, output.Tensor);
        }

        w.WriteEndObject();
        WriteTiming(w, result.Timing);
        if (result.Window is { } window)
        {
            WriteWindow(w, window);
        }
    }

    public static void WriteErrorFields(Utf8JsonWriter w, InferError error)
    {
        w.WriteString("code", error.Code.ToWire());
        w.WriteString("message", error.Message);
        if (error.RetryAfterMs is { } retry)
        {
            w.WriteNumber("retry_after_ms", retry);
        }
    }

    public static void WriteTensor(Utf8JsonWriter w, Tensor tensor)
    {
        w.WriteStartObject();
        w.WriteString("dtype", tensor.ElementType.ToWire());
        WriteShapeAndData(w, tensor);
        w.WriteEndObject();
    }

    /// <summary>Writes a tensor's <c>shape</c> and <c>data</c> (flat, row-major) into the open object.</summary>
    public static void WriteShapeAndData(Utf8JsonWriter w, Tensor tensor)
    {
        WriteShape(w, tensor);
        w.WriteStartArray("data");
        var data = tensor.Data.Span;
        var size = tensor.ElementType.ElementSize();
        if (tensor.ElementType == TensorElementType.String)
        {
            foreach (var s in tensor.Strings)
            {
                w.WriteStringValue(s);
            }
        }
        else
        {
            for (var offset = 0; offset + size <= data.Length; offset += size)
            {
                var e = data.Slice(offset, size);
                switch (tensor.ElementType)
                {
                    case TensorElementType.Float32: WriteFloat(w, BinaryPrimitives.ReadSingleLittleEndian(e)); break;
                    case TensorElementType.Float64: WriteFloat(w, BinaryPrimitives.ReadDoubleLittleEndian(e)); break;
                    case TensorElementType.Float16: WriteFloat(w, (float)BinaryPrimitives.ReadHalfLittleEndian(e)); break;
                    case TensorElementType.Int64: w.WriteNumberValue(BinaryPrimitives.ReadInt64LittleEndian(e)); break;
                    case TensorElementType.Int32: w.WriteNumberValue(BinaryPrimitives.ReadInt32LittleEndian(e)); break;
                    case TensorElementType.Int16: w.WriteNumberValue(BinaryPrimitives.ReadInt16LittleEndian(e)); break;
                    case TensorElementType.Int8: w.WriteNumberValue(unchecked((sbyte)e[0])); break;
                    case TensorElementType.UInt8: w.WriteNumberValue(e[0]); break;
                    case TensorElementType.Bool: w.WriteBooleanValue(e[0] != 0); break;
                    default: break;
                }
            }
        }

        w.WriteEndArray();
    }

    /// <summary>
    /// A float element: a number, or for NaN and the infinities, which JSON has no number for, the strings
    /// <c>"NaN"</c>, <c>"Infinity"</c> and <c>"-Infinity"</c> (the names .NET, JavaScript and Python parse back).
    /// </summary>
    private static void WriteFloat(Utf8JsonWriter w, double value)
    {
        if (double.IsFinite(value))
        {
            w.WriteNumberValue(value);
        }
        else
        {
            w.WriteStringValue(double.IsNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity");
        }
    }

    private static void WriteFloat(Utf8JsonWriter w, float value)
    {
        if (float.IsFinite(value))
        {
            w.WriteNumberValue(value);
        }
        else
        {
            WriteFloat(w, (double)value);
        }
    }

    private static void WriteShape(Utf8JsonWriter w, Tensor tensor)
    {
        w.WriteStartArray("shape");
        foreach (var d in tensor.Shape)
        {
            w.WriteNumberValue(d);
        }

        w.WriteEndArray();
    }

    /// <summary>The <c>timing</c> object: queue and compute time, and the batch's size in rows.</summary>
    public static void WriteTiming(Utf8JsonWriter w, Timing timing)
    {
        w.WriteStartObject("timing");
        w.WriteNumber("queue_ms", Math.Round(timing.QueueMs, 3));
        w.WriteNumber("compute_ms", Math.Round(timing.ComputeMs, 3));
        w.WriteNumber("batch_size", timing.BatchSize);
        w.WriteEndObject();
    }

    private static byte[] Write(Action<Utf8JsonWriter> write) => Write(write, static (w, write) => write(w));

    /// <summary>
    /// Writes one frame with this thread's writer and buffer, reused from frame to frame: only the frame's own bytes are
    /// allocated, not a buffer, a writer and a closure per frame; fewer collections pause the return path.
    /// </summary>
    private static byte[] Write<TState>(TState state, Action<Utf8JsonWriter, TState> write)
    {
        var cached = Begin();
        write(cached.Writer, state);
        cached.Writer.Flush();
        var frame = cached.Buffer.WrittenSpan.ToArray();
        Release(cached);
        return frame;
    }

    /// <summary>This thread's writer, emptied for the next frame.</summary>
    private static ReusableWriter Begin()
    {
        var cached = t_writer ??= new ReusableWriter();
        cached.Buffer.ResetWrittenCount();
        cached.Writer.Reset(cached.Buffer);
        return cached;
    }

    private static void Release(ReusableWriter cached)
    {
        if (cached.Buffer.Capacity > MaxKeptBuffer)
        {
            // A large result frame: do not keep its buffer alive on this thread.
            t_writer = null;
        }
    }

    private const int MaxKeptBuffer = 64 * 1024;

    [ThreadStatic]
    private static ReusableWriter? t_writer;

    private sealed class ReusableWriter
    {
        public ArrayBufferWriter<byte> Buffer { get; } = new(256);

        public Utf8JsonWriter Writer { get; }

        public ReusableWriter() => Writer = new Utf8JsonWriter(Buffer, Options);
    }
}
