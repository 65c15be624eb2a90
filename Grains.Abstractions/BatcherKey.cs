namespace StreamInfer;

/// <summary>
/// The key of a <see cref="IBatcherGrain"/>: <c>model/silo/device</c>. Model names may not contain '/'.
/// </summary>
public readonly record struct BatcherKey(string Model, string Silo, string Device)
{
    /// <summary>The grain key string.</summary>
    public override string ToString() => $"{Model}/{Silo}/{Device}";

    /// <summary>Parses a grain key made by <see cref="ToString"/>.</summary>
    public static BatcherKey Parse(string key)
    {
        var parts = key.Split('/');
        if (parts.Length != 3 || parts.Any(string.IsNullOrEmpty))
        {
            throw new FormatException($"'{key}' is not a batcher key of the form model/silo/device.");
        }

        return new BatcherKey(parts[0], parts[1], parts[2]);
    }
}
