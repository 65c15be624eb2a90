using System.Globalization;
using System.Text.Json;

namespace StreamInfer.Frontend.Protocol;

/// <summary>
/// Reads a request's stateful-sequence fields, <c>sequence_id</c>, <c>sequence_start</c> and <c>sequence_end</c>, into a
/// <see cref="SequenceControl"/>, whichever transport carried them: the top level of an <c>infer</c> frame or
/// <c>/predict</c> body, or the <c>parameters</c> of a KServe request (HTTP or gRPC, where Triton also allows an integer
/// id: it becomes its decimal text). Every request parsed here is unordered; a transport that orders its requests marks
/// them with <see cref="Ordered"/>.
/// </summary>
internal static class SequenceFields
{
    public const string Id = "sequence_id";
    public const string Start = "sequence_start";
    public const string End = "sequence_end";

    /// <summary>The longest sequence id, as for request ids.</summary>
    public const int MaxIdLength = 256;

    /// <summary>
    /// Reads the three fields from a JSON object; <paramref name="where"/> prefixes the field in messages (empty at the
    /// top level, <c>"parameters."</c> in KServe's). Null without an error when the object names no sequence.
    /// </summary>
    public static (SequenceControl? Sequence, string? Error) Read(JsonElement owner, string where, bool integerId)
    {
        string? id = null;
        if (owner.TryGetProperty(Id, out var idElement))
        {
            id = idElement.ValueKind switch
            {
                JsonValueKind.String => idElement.GetString(),
                JsonValueKind.Number when integerId && idElement.TryGetUInt64(out var n) && n > 0 => n.ToString(CultureInfo.InvariantCulture),
                _ => null,
            };

            if (id is null || IdError(id) is not null)
            {
                return (null, $"'{where}{Id}' must be {IdRule(integerId)}.");
            }
        }

        var (start, startError) = Flag(owner, Start, where);
        var (end, endError) = Flag(owner, End, where);
        if ((startError ?? endError) is { } error)
        {
            return (null, error);
        }

        return Build(id, start, end, where);
    }

    /// <summary>The control for an id and flags read elsewhere (gRPC's typed parameters); null without an error when
    /// neither an id nor a flag is set.</summary>
    public static (SequenceControl? Sequence, string? Error) Build(string? id, bool start, bool end, string where)
    {
        if (id is null)
        {
            return start || end
                ? (null, $"'{where}{(start ? Start : End)}' needs a '{where}{Id}' naming the sequence.")
                : (null, null);
        }

        return (new SequenceControl(id, start, end), null);
    }

    /// <summary>What is wrong with a sequence id given as text, or null.</summary>
    public static string? IdError(string id) => id.Length is 0 or > MaxIdLength ? $"a non-empty string of at most {MaxIdLength} characters" : null;

    /// <summary>What a sequence id may be, for messages.</summary>
    public static string IdRule(bool integerId) => integerId
        ? $"a non-empty string of at most {MaxIdLength} characters, or a positive integer"
        : $"a non-empty string of at most {MaxIdLength} characters";

    /// <summary>The request as a transport that keeps its client's order (a WebSocket connection, a gRPC stream) sends it.</summary>
    public static ClientFrame.Infer Ordered(ClientFrame.Infer infer)
        => infer.Sequence is { Ordered: false } sequence ? infer with { Sequence = sequence with { Ordered = true } } : infer;

    private static (bool Value, string? Error) Flag(JsonElement owner, string name, string where)
    {
        if (!owner.TryGetProperty(name, out var element))
        {
            return (false, null);
        }

        return element.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? (element.GetBoolean(), null)
            : (false, $"'{where}{name}' must be true or false.");
    }
}
