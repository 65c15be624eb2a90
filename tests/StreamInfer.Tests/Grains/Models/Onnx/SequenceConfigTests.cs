using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
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
