using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models.Onnx;

/// <summary>A stateful model's <c>sequence.window</c> checked at load: every problem named with its field, and a sound
/// window read into the model's options.</summary>
public sealed class WindowConfigTests
{
    public static TheoryData<string, string, string> Broken => new()
    {
        { """{ "size": 4 }""", "sequence.window.output", "is missing" },
        { """{ "output": "output" }""", "sequence.window.size", "is missing" },
        { """{ "output": "output", "size": 0 }""", "sequence.window.size", "must be in [1, 4096]" },
        { """{ "output": "output", "size": 4097 }""", "sequence.window.size", "must be in [1, 4096]" },
        { """{ "output": "nope", "size": 4 }""", "sequence.window.output", "no output 'nope' (it has output)" },
        { """{ "output": "stateN", "size": 4 }""", "sequence.window.output", "is a state" },
        { """{ "output": "output", "size": 4, "element": -1 }""", "sequence.window.element", "at least 0" },
        { """{ "output": "output", "size": 4, "element": 1 }""", "sequence.window.element", "1 elements per row" },
        { """{ "output": "output", "size": 4, "off": 0.2 }""", "sequence.window.off", "needs \"on\"" },
        { """{ "output": "output", "size": 4, "on": 0.5, "off": 0.6 }""", "sequence.window.off", "at most \"on\"" },
    };

    [Theory]
    [MemberData(nameof(Broken))]
    public async Task Load_BrokenWindow_FailsNamingTheField(string window, string field, string reason)
    {
        using var loaded = await LoadAsync(window);

        Assert.Contains(loaded.Stack.Catalog.Status.Errors, e => e.Model == "vad" && e.Field == field && e.Reason.Contains(reason, StringComparison.Ordinal));
        Assert.False(loaded.Stack.Catalog.TryGet("vad", out var entry) && entry.State == ModelState.Ready);
    }

    [Theory]
    [InlineData("""{ "output": "output", "size": 8, "on": 0.5, "off": 0.35, "element": 0 }""", 0.35)]
    [InlineData("""{ "output": "output", "size": 8, "on": 0.5, "element": 0 }""", 0.5)]
    public async Task Load_Window_ReadIntoTheOptions(string window, double off)
    {
        using var loaded = await LoadAsync(window);

        Assert.True(loaded.Stack.Catalog.TryGet("vad", out var entry) && entry.State == ModelState.Ready, string.Join("; ", loaded.Stack.Catalog.Status.Errors));
        var options = entry.Options.Sequence!.Window!;
        Assert.Equal(("output", 8, 0, 0.5, off), (options.Output, options.Size, options.Element ?? -1, options.On ?? -1, options.Off));
    }

    private static async Task<Loaded> LoadAsync(string window)
    {
        var root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        TestModels.WriteStateful(root, sequence: false, extraConfig: $$""", "sequence": { "state": [{ "input": "state", "output": "stateN" }], "window": {{window}} }""");
        var devices = new DeviceRegistry(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
        var stack = new ModelStack(root, devices, builtInTinyLm: false);
        await stack.StartAsync();
        return new Loaded(devices, stack);
    }

    private sealed record Loaded(DeviceRegistry Devices, ModelStack Stack) : IDisposable
    {
        public void Dispose()
        {
            Stack.Dispose();
            Devices.Dispose();
        }
    }
}
