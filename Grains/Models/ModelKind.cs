namespace StreamInfer.Grains.Models;

/// <summary>What a model is, which decides how it loads, warms up, batches and rolls out.</summary>
public enum ModelKind
{
    /// <summary>A model whose <c>config.json</c> is broken: it is listed, failed, with its reasons.</summary>
    Unknown,

    /// <summary>The built-in echo: returns its inputs, with optional simulated compute.</summary>
    Echo,

    /// <summary>An ONNX model that answers a batch of tensors in one run.</summary>
    Tensor,

    /// <summary>An ONNX causal language model decoded token by token with a key/value cache.</summary>
    Decoder,
}

/// <summary>The names a <see cref="ModelKind"/> has in <c>config.json</c> and in the metadata the frontends show.</summary>
public static class ModelKinds
{
    /// <summary>The kinds a repository model may name, as <c>config.json</c> spells them.</summary>
    public const string Expected = "\"echo\", \"tensor\" or \"decoder\"";

    /// <summary>The kind's name on the wire; <c>?</c> for <see cref="ModelKind.Unknown"/>.</summary>
    public static string ToWire(this ModelKind kind) => kind switch
    {
        ModelKind.Echo => "echo",
        ModelKind.Tensor => "tensor",
        ModelKind.Decoder => "decoder",
        _ => "?",
    };

    /// <summary>Reads a kind as <c>config.json</c> spells it (exactly, lower case).</summary>
    public static bool TryParse(string? wire, out ModelKind kind)
    {
        kind = wire switch
        {
            "echo" => ModelKind.Echo,
            "tensor" => ModelKind.Tensor,
            "decoder" => ModelKind.Decoder,
            _ => ModelKind.Unknown,
        };
        return kind != ModelKind.Unknown;
    }
}
