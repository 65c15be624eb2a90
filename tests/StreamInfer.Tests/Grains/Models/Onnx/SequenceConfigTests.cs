using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models.Onnx;

/// <summary>A stateful model's <c>sequence</c> section checked at load: every problem named with its field.</summary>
public sealed class SequenceConfigTests
{
    public static TheoryData<string, string, string> Broken => new()
    {
        { """ "state": [] """, "sequence.state", "is missing" },
        { """ "state": [{ "input": "nope", "output": "stateN" }] """, "sequence.state[0].input", "no input 'nope'" },
        { """ "state": [{ "input": "state", "output": "output" }] """, "sequence.state[0].output", "besides its batch axis" },
        { """ "state": [{ "input": "state", "output": "stateN" }], "start_input": "input" """, "sequence.start_input", "cannot be a flag" },
        { """ "state": [{ "input": "state", "output": "stateN" }], "end_input": "state" """, "sequence.end_input", "already fed" },
        { """ "state": [{ "input": "state", "output": "stateN" }], "idle_timeout_ms": 0 """, "sequence.idle_timeout_ms", "must be in" },
        { """ "state": [{ "input": "state", "output": "stateN" }], "max_sequences": 0 """, "sequence.max_sequences", "must be in" },
    };

    [Theory]
    [MemberData(nameof(Broken))]
    public async Task Load_BrokenSequenceSection_FailsNamingTheField(string section, string field, string reason)
    {
        var root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        TestModels.WriteStateful(root, sequence: false, extraConfig: $$""", "sequence": { {{section}} }""");
        using var devices = new DeviceRegistry(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
        using var stack = new ModelStack(root, devices, builtInTinyLm: false);

        await stack.StartAsync();

        Assert.Contains(stack.Catalog.Status.Errors, e => e.Model == "vad" && e.Field == field && e.Reason.Contains(reason, StringComparison.Ordinal));
        Assert.False(stack.Catalog.TryGet("vad", out var entry) && entry.State == ModelState.Ready);
    }

    public static TheoryData<string, string, string, string> BrokenDeclarations => new()
    {
        { "\"sequence\": {", "\"mask_input\": \"state\", \"sequence\": {", "mask_input", "fed by the grid" },
        { "\"sequence\": {", "\"mask_input\": \"sr\", \"sequence\": {", "mask_input", "cannot be a mask" },
        { "{ \"name\": \"stateN\", \"batch_axis\": 1 }", "{ \"name\": \"stateN\", \"batch_axis\": 1, \"warmup\": 1 }", "outputs[1].warmup", "warm-up" },
    };

    [Theory]
    [MemberData(nameof(BrokenDeclarations))]
    public async Task Load_StatefulModelsDeclarationBroken_FailsNamingTheField(string find, string replace, string field, string reason)
    {
        var root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        TestModels.WriteStateful(root);
        EditConfig(root, find, replace);
        using var devices = new DeviceRegistry(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
        using var stack = new ModelStack(root, devices, builtInTinyLm: false);

        await stack.StartAsync();

        Assert.Contains(stack.Catalog.Status.Errors, e => e.Model == "vad" && e.Field == field && e.Reason.Contains(reason, StringComparison.Ordinal));
        Assert.False(stack.Catalog.TryGet("vad", out var entry) && entry.State == ModelState.Ready);
    }

    [Theory]
    [InlineData(null, false)]
    [InlineData(16000, true)]
    public async Task Load_SharedInputZeroIsInvalid_WarmsUpWithItsWarmupValue(int? warmup, bool ready)
    {
        // y = x + [1][sr / 8000 - 2]: the index is out of range unless sr is 16 kHz.
        var root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        var g = new OnnxGraphBuilder("gate");
        g.Input("x", TensorElementType.Float32, "batch", 1L);
        g.Input("sr", TensorElementType.Int64);
        var index = g.Node("Sub", [g.Node("Div", ["sr", g.Constant("per_rate", [8000L])]), g.Constant("two", [2L])]);
        g.Node("Add", ["x", g.Node("Gather", [g.Constant("one", [1f], 1), index])], "y");
        g.Output("y", TensorElementType.Float32, "batch", 1L);
        g.Save(Path.Combine(root, "gate", "1", "model.onnx"));
        var declared = warmup is { } value ? $", \"warmup\": {value}" : string.Empty;
        File.WriteAllText(Path.Combine(root, "gate", "config.json"), $$"""
            { "kind": "tensor", "max_batch_size": 4,
              "inputs": [{ "name": "x" }, { "name": "sr", "shared": true {{declared}} }] }
            """);
        using var devices = new DeviceRegistry(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
        using var stack = new ModelStack(root, devices, builtInTinyLm: false);

        await stack.StartAsync();

        Assert.Equal(ready, stack.Catalog.TryGet("gate", out var entry) && entry.State == ModelState.Ready);
        Assert.Equal(ready, !stack.Catalog.Status.Errors.Any(e => e.Model == "gate" && e.Reason.Contains("warm-up", StringComparison.Ordinal)));
    }

    private static void EditConfig(string root, string find, string replace)
    {
        var path = Path.Combine(root, "vad", "config.json");
        var text = File.ReadAllText(path);
        Assert.Contains(find, text, StringComparison.Ordinal);
        File.WriteAllText(path, text.Replace(find, replace, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Load_SequenceOnEcho_RefusedAsTensorOnly()
    {
        var root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(root, "stateful-echo"));
        File.WriteAllText(Path.Combine(root, "stateful-echo", "config.json"), """{ "kind": "echo", "sequence": { "state": [{ "input": "a", "output": "b" }] } }""");
        using var devices = new DeviceRegistry(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
        using var stack = new ModelStack(root, devices, builtInTinyLm: false);

        await stack.StartAsync();

        Assert.Contains(stack.Catalog.Status.Errors, e => e.Field == "sequence" && e.Reason.Contains("tensor models only", StringComparison.Ordinal));
    }
}
