using Microsoft.ML.OnnxRuntime;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// What of an ONNX Runtime failure may travel beyond the log: its error code (<c>InvalidProtobuf</c>,
/// <c>InvalidArgument</c>, ...), never its text, which names absolute file paths and graph internals.
/// </summary>
internal static class OnnxErrors
{
    private const string Prefix = "[ErrorCode:";

    /// <summary>ONNX Runtime's code for <paramref name="ex"/>, or the exception's type name for any other failure.</summary>
    public static string Code(Exception ex)
    {
        if (ex is not OnnxRuntimeException)
        {
            return ex.GetType().Name;
        }

        var message = ex.Message.AsSpan().TrimStart();
        if (message.StartsWith(Prefix, StringComparison.Ordinal) && message.IndexOf(']') is var end and > 0)
        {
            var code = message[Prefix.Length..end].Trim();
            if (code.Length is > 0 and <= 64 && !code.ContainsAny('/', '\\'))
            {
                return code.ToString();
            }
        }

        return "OnnxRuntimeException";
    }
}
