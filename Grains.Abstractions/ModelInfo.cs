using System.Collections.Immutable;

namespace StreamInfer;

/// <summary>Where a model is in its life on a silo. Values are serialized: never renumber.</summary>
[GenerateSerializer, Alias("StreamInfer.ModelState")]
public enum ModelState
{
    /// <summary>Its sessions are being created and warmed; requests are refused with <c>model_unavailable</c>.</summary>
    Loading = 0,
    /// <summary>Loaded and warm on at least one device: requests are served.</summary>
    Ready = 1,
    /// <summary>It could not be loaded; <see cref="ModelInfo.Errors"/> says why. The other models serve.</summary>
    Failed = 2,
}

/// <summary>One problem found in the model repository: which model, which file and field, and why.</summary>
/// <param name="Model">The model's name (its folder).</param>
/// <param name="File">The file at fault, relative to the repository (e.g. <c>resnet/1/model.onnx</c>), or null.</param>
/// <param name="Field">The config field at fault (e.g. <c>inputs[0].name</c>), or null.</param>
/// <param name="Reason">What is wrong, in words.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.ModelLoadError")]
public sealed record ModelLoadError(
    [property: Id(0)] string Model,
    [property: Id(1)] string? File,
    [property: Id(2)] string? Field,
    [property: Id(3)] string Reason)
{
    /// <summary>
    /// The failure's own text (an exception's message, which may name absolute paths), for the log of the silo that
    /// found it; never serialized, so it reaches no other process and no client. Null when <see cref="Reason"/> says all.
    /// </summary>
    [field: NonSerialized]
    public string? Detail { get; init; }

    /// <inheritdoc/>
    public override string ToString()
        => $"model '{Model}'{(File is null ? string.Empty : $", {File}")}{(Field is null ? string.Empty : $", field '{Field}'")}: {Reason}";

    /// <summary>
    /// What a serving endpoint tells a client about a model that failed to load: where the problems are (config fields,
    /// files relative to the repository), not what they are; the log and the operator endpoints have the reasons.
    /// </summary>
    public static string ForClients(string model, IEnumerable<ModelLoadError> errors)
    {
        var where = errors
            .Select(e => e.Field is not null ? $"config field '{e.Field}'" : e.File is not null ? $"file '{e.File}'" : null)
            .OfType<string>()
            .Distinct(StringComparer.Ordinal)
            .ToList();
        var at = where.Count switch
        {
            0 => string.Empty,
            <= 3 => $" (at {string.Join(", ", where)})",
            _ => $" (at {string.Join(", ", where.Take(3))} and {where.Count - 3} more)",
        };
        return $"model '{model}' failed to load{at}; the server's log says why.";
    }
}

/// <summary>An input or output a model declares. <see cref="Shape"/> includes the batch axis first, as -1; other
/// dynamic axes are -1 too.</summary>
[GenerateSerializer, Immutable, Alias("StreamInfer.TensorSpec")]
public sealed record TensorSpec(
    [property: Id(0)] string Name,
    [property: Id(1)] TensorElementType ElementType,
    [property: Id(2)] ImmutableArray<long> Shape);

/// <summary>What a silo knows of one model: its kind, serving version, state and signature (KServe v2 metadata).</summary>
/// <param name="Name">The model's name.</param>
/// <param name="Kind"><c>echo</c>, <c>tensor</c> or <c>decoder</c>.</param>
/// <param name="Version">The version that serves (or is loading).</param>
/// <param name="State">Loading, ready or failed.</param>
/// <param name="Errors">Why it failed; empty otherwise.</param>
/// <param name="Inputs">Its inputs; empty for a model that takes any (echo).</param>
/// <param name="Outputs">Its outputs; empty when they mirror the inputs (echo).</param>
/// <param name="MaxBatchSize">The most rows one batch holds.</param>
/// <param name="Devices">The devices it is loaded on.</param>
/// <param name="MaxRequestBytes">The most tensor payload bytes one request may carry (<c>max_request_bytes</c>); null
/// when the model sets no limit of its own.</param>
/// <param name="Stateful">The model carries state from one request of a sequence to the next (a <c>sequence</c>
/// section): every request to it names its sequence, and a request to any other model names none.</param>
/// <param name="SequenceIdleTimeoutMs">A stateful model's <c>idle_timeout_ms</c>: how long a sequence with nothing in
/// flight keeps its state; null for a stateless model.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.ModelInfo")]
public sealed record ModelInfo(
    [property: Id(0)] string Name,
    [property: Id(1)] string Kind,
    [property: Id(2)] string Version,
    [property: Id(3)] ModelState State,
    [property: Id(4)] ImmutableArray<ModelLoadError> Errors,
    [property: Id(5)] ImmutableArray<TensorSpec> Inputs,
    [property: Id(6)] ImmutableArray<TensorSpec> Outputs,
    [property: Id(7)] int MaxBatchSize,
    [property: Id(8)] ImmutableArray<string> Devices,
    [property: Id(9)] long? MaxRequestBytes = null,
    [property: Id(10)] bool Stateful = false,
    [property: Id(11)] double? SequenceIdleTimeoutMs = null);

/// <summary>A silo's view of its model repository: every model it knows and every problem the last load found.</summary>
/// <param name="Models">The models, by name order.</param>
/// <param name="Errors">All problems found, including those of models that could not even be named in a catalog entry.</param>
/// <param name="Loading">Whether models are still being loaded and warmed.</param>
[GenerateSerializer, Immutable, Alias("StreamInfer.RepositoryStatus")]
public sealed record RepositoryStatus(
    [property: Id(0)] ImmutableArray<ModelInfo> Models,
    [property: Id(1)] ImmutableArray<ModelLoadError> Errors,
    [property: Id(2)] bool Loading);
