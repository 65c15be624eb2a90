using System.Text.Json;

namespace StreamInfer.Grains.Models.Repository;

/// <summary>
/// The <c>inputs</c> and <c>outputs</c> declarations' own checks (their names and sizes against the ONNX file are
/// checked when the model loads).
/// </summary>
internal static class DeclarationChecks
{
    public static void Check(List<TensorDeclaration>? declarations, string field, Action<string?, string> error)
    {
        if (declarations is null)
        {
            return;
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < declarations.Count; i++)
        {
            var d = declarations[i];
            var at = $"{field}[{i}]";
            if (string.IsNullOrEmpty(d.Name))
            {
                error($"{at}.name", "is missing.");
            }
            else if (!seen.Add(d.Name))
            {
                error($"{at}.name", $"'{d.Name}' is declared twice.");
            }

            if (d.Datatype is not null && !TensorTypes.TryParse(d.Datatype, out _))
            {
                error($"{at}.datatype", $"\"{d.Datatype}\" is not a known element type.");
            }

            if (d.BatchAxis is < 0 or > FieldChecks.MaxBatchAxis)
            {
                error($"{at}.batch_axis", $"must be in [0, {FieldChecks.MaxBatchAxis}]; got {d.BatchAxis}.");
            }

            if (d.Warmup is { } warmup && !double.IsFinite(warmup))
            {
                error($"{at}.warmup", $"must be a finite number; got {warmup}.");
            }

            if (d.Shared == true && field == "outputs")
            {
                error($"{at}.shared", "applies to inputs only: every output carries the batch.");
            }
            else if (d.Shared == true && d.BatchAxis is not null)
            {
                error($"{at}.batch_axis", "a shared input has no batch axis.");
            }

            if (d.Dims is { } dims)
            {
                for (var k = 0; k < dims.Count; k++)
                {
                    var dimAt = $"{at}.dims[{k}]";
                    switch (dims[k].ValueKind)
                    {
                        case JsonValueKind.Number when dims[k].TryGetInt64(out var n) && n is >= -1 and <= int.MaxValue:
                        case JsonValueKind.String when dims[k].GetString() is { Length: > 0 }:
                            break;
                        case JsonValueKind.Object:
                            CheckAxisObject(dims[k], dimAt, error);
                            break;
                        default:
                            error(dimAt, $"must be a size in [0, {int.MaxValue}], -1, an axis name or {{\"name\", \"max\"}}; got {Quote(dims[k])}.");
                            break;
                    }
                }
            }
        }
    }

    /// <summary>A dynamic axis written as an object: <c>{"name": "width", "max": 4096}</c>, either key optional.</summary>
    private static void CheckAxisObject(JsonElement dim, string at, Action<string?, string> error)
    {
        foreach (var property in dim.EnumerateObject())
        {
            switch (property.Name)
            {
                case "name" when property.Value.ValueKind != JsonValueKind.String || property.Value.GetString() is not { Length: > 0 }:
                    error($"{at}.name", $"must be a non-empty axis name; got {Quote(property.Value)}.");
                    break;
                case "max" when property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetInt64(out var max) || max is < 1 or > int.MaxValue:
                    error($"{at}.max", $"must be a whole number in [1, {int.MaxValue}]; got {Quote(property.Value)}.");
                    break;
                case "name" or "max":
                    break;
                default:
                    error($"{at}.{property.Name}", "is not a field of an axis (expected \"name\" and/or \"max\").");
                    break;
            }
        }
    }

    /// <summary>A value as written, cut short: a report quotes what is wrong, not a whole subtree.</summary>
    private static string Quote(JsonElement value)
    {
        var raw = value.GetRawText();
        return raw.Length > 64 ? raw[..64] + "..." : raw;
    }
}
