namespace StreamInfer.Grains.Models.Decoding;

/// <summary>Checks a generation request's sampling settings before it is queued.</summary>
public static class GenerationSettings
{
    /// <summary>The most stop sequences a request may give.</summary>
    public const int MaxStopSequences = 4;

    /// <summary>The longest stop sequence, in UTF-16 characters.</summary>
    public const int MaxStopLength = 64;

    /// <summary>The highest temperature accepted.</summary>
    public const double MaxTemperature = 2.0;

    /// <summary>
    /// Returns what is wrong with the settings, naming the field, or null when they are valid. Null values mean "as
    /// configured" and are always valid. A top_k above <paramref name="vocabSize"/> is valid and keeps every token.
    /// </summary>
    public static string? Validate(
        double? temperature, int? topK, double? topP, int? maxTokens, IReadOnlyList<string>? stop, int vocabSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 1);
        if (temperature is { } t && !(t >= 0 && t <= MaxTemperature))
        {
            return $"temperature must be between 0 and {MaxTemperature}, got {t}.";
        }
        if (topK is < 0)
        {
            return $"top_k must be 0 (off) or more, got {topK}.";
        }
        if (topP is { } p && !(p > 0 && p <= 1))
        {
            return $"top_p must be greater than 0 and at most 1, got {p}.";
        }
        if (maxTokens is < 1)
        {
            return $"max_tokens must be at least 1, got {maxTokens}.";
        }
        if (stop is null)
        {
            return null;
        }
        if (stop.Count > MaxStopSequences)
        {
            return $"stop may list at most {MaxStopSequences} sequences, got {stop.Count}.";
        }
        for (var i = 0; i < stop.Count; i++)
        {
            if (stop[i] is not { Length: >= 1 and <= MaxStopLength })
            {
                return $"stop[{i}] must be 1 to {MaxStopLength} characters long.";
            }
        }
        return null;
    }
}
