namespace StreamInfer.Grains.Models.Repository;

/// <summary>
/// The range checks every numeric field of a <c>config.json</c> goes through: a value outside its range is reported
/// naming the field and the range, and left unset.
/// </summary>
internal static class FieldChecks
{
    /// <summary>The most bytes a <c>config.json</c> may have: a config is a page of settings, not data.</summary>
    public const int MaxConfigBytes = 1 << 20;

    /// <summary>The largest byte limit a model may set (<c>max_request_bytes</c>, <c>max_batch_bytes</c>): 1 TiB.</summary>
    public const long MaxBytes = 1L << 40;

    /// <summary>The largest size a <c>warmup_dims</c> axis may take.</summary>
    public const long MaxWarmupDim = 1 << 20;

    /// <summary>The most entries <c>warmup_batch_sizes</c> may list.</summary>
    public const int MaxWarmupBatchSizes = 64;

    /// <summary>The highest axis a declaration's <c>batch_axis</c> may name.</summary>
    public const int MaxBatchAxis = 31;

    /// <summary>The most characters of a pinned <c>version</c>.</summary>
    public const int MaxVersionLength = 128;

    public static void Range(int? value, int min, int max, string field, Action<string?, string> error, Action<int> set)
    {
        if (value is not { } v)
        {
            return;
        }

        if (v < min || v > max)
        {
            error(field, $"must be in [{min}, {max}]; got {v}.");
        }
        else
        {
            set(v);
        }
    }

    public static void Bytes(long? value, long min, long max, string field, Action<string?, string> error, Action<long> set)
    {
        if (value is not { } v)
        {
            return;
        }

        if (v < min || v > max)
        {
            error(field, $"must be in [{min}, {max}] bytes; got {v}.");
        }
        else
        {
            set(v);
        }
    }

    public static void Milliseconds(double? value, double min, double max, string field, Action<string?, string> error, Action<TimeSpan> set)
    {
        if (value is not { } v)
        {
            return;
        }

        if (!double.IsFinite(v) || v < min || v > max)
        {
            error(field, $"must be in [{min}, {max}] ms; got {v}.");
        }
        else
        {
            set(TimeSpan.FromMilliseconds(v));
        }
    }
}
