using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models;

public sealed class RepositorySyncTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
    private readonly DeviceRegistry _devices = new(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);

    [Fact]
    public async Task Load_RepositoryWithBrokenModels_ReportsEveryProblemAndServesTheRest()
    {
        TestModels.WriteSequence(_root, "good");
        // The config points at a version folder with no model file.
        TestModels.WriteSequence(_root, "missing-file");
        File.Delete(Path.Combine(_root, "missing-file", "1", "model.onnx"));
        // A file that is not ONNX at all.
        TestModels.WriteSequence(_root, "unreadable");
        File.WriteAllText(Path.Combine(_root, "unreadable", "1", "model.onnx"), "this is not a protobuf");
        // The config declares an input the model does not have, and a mask it does not have either.
        TestModels.WriteSequence(_root, "wrong-input", extraConfig: """, "inputs": [{"name": "pixels", "datatype": "FP32"}]""");
        TestModels.WriteSequence(_root, "unknown-kind");
        Write("unknown-kind", """{ "kind": "classifier" }""");
        Write("no-config", null);
        Write("bad-json", """{ "kind": "tensor", """);
        Write("bad-values", """{ "kind": "echo", "max_batch_size": 0, "priority_levels": 2, "default_priority": 5, "colour": "blue" }""");

        using var models = NewStack();
        var pending = models.Register();
        var initial = models.Catalog.Status;
        await models.Repository.LoadAsync(pending, CancellationToken.None);
        var status = models.Catalog.Status;

        Assert.False(status.Loading);
        Assert.True(initial.Loading);
        Assert.Equal(ModelState.Ready, Model(status, "good").State);
        AssertFailed(status, "missing-file", "missing-file/1/model.onnx", null, "missing");
        AssertFailed(status, "unreadable", "unreadable/1/model.onnx", null, "ONNX Runtime cannot load it");
        AssertFailed(status, "wrong-input", "wrong-input/config.json", "inputs[0].name", "no input 'pixels'");
        AssertFailed(status, "unknown-kind", "unknown-kind/config.json", "kind", "\"classifier\" is not a known kind");
        AssertFailed(status, "no-config", "no-config/config.json", null, "config.json is missing");
        AssertFailed(status, "bad-json", "bad-json/config.json", null, "not valid");
        // A config with an unknown field stops at the first such field; the model still fails with its name and why.
        AssertFailed(status, "bad-values", "bad-values/config.json", "colour", "not valid");
    }

    [Fact]
    public async Task Load_ConfigWithSeveralBadValues_ReportsAllOfThem()
    {
        Write("knobs", """{ "kind": "echo", "max_batch_size": 0, "max_wait_ms": -1, "priority_levels": 2, "default_priority": 5, "queue_capacity": 0 }""");

        using var models = NewStack();
        await models.StartAsync();

        var errors = models.Catalog.Status.Errors.Where(e => e.Model == "knobs").Select(e => e.Field).ToHashSet();
        Assert.Equal(["default_priority", "max_batch_size", "max_wait_ms", "queue_capacity"], errors.Order());
        Assert.Equal(ModelState.Failed, Model(models.Catalog.Status, "knobs").State);
    }

    [Fact]
    public async Task Load_TensorModel_WarmsUpBeforeReadyAndKeepsItsSignature()
    {
        TestModels.WriteSequence(_root, "seq", extraConfig: """, "warmup_batch_sizes": [1, 3], "warmup_dims": {"seq": 5}, "priority_levels": 3, "default_timeout_ms": 1500""");

        using var models = NewStack();
        var pending = models.Register();
        Assert.Equal(ModelState.Loading, Model(models.Catalog.Status, "seq").State);
        await models.Repository.LoadAsync(pending, CancellationToken.None);

        Assert.True(models.Catalog.TryGet("seq", out var entry));
        Assert.Equal(ModelKind.Tensor, entry.Kind);
        Assert.Equal("tensor", entry.ToInfo().Kind);
        Assert.Equal(ModelState.Ready, entry.State);
        Assert.Equal(["cpu0"], entry.Instances.Keys.ToArray());
        Assert.True(entry.Any!.WarmBatchMs > 0);
        Assert.Equal(3, entry.Options.PriorityLevels);
        Assert.Equal(TimeSpan.FromMilliseconds(1500), entry.Options.DefaultTimeout);
        var info = entry.ToInfo();
        Assert.Equal(["tokens", "mask"], info.Inputs.Select(i => i.Name));
        Assert.Equal([-1L, -1, 4], info.Inputs[0].Shape.ToArray());
        Assert.Equal(["hidden", "pooled"], info.Outputs.Select(o => o.Name));
    }

    [Fact]
    public async Task Load_ConfigWithBadLimitsAndAxisObjects_ReportsAllOfThemWithTheirFields()
    {
        Write("limits", """
            { "kind": "tensor", "max_request_bytes": 0, "max_batch_bytes": 10,
              "inputs": [{ "name": "pixels", "dims": [{ "name": "", "max": 0, "colour": 1 }, { "max": "big" }, true] }] }
            """);
        Write("echo-batch", """{ "kind": "echo", "max_batch_bytes": 4096 }""");
        Write("decoder-request", """{ "kind": "decoder", "max_request_bytes": 100 }""");
        Write("echo-limited", """{ "kind": "echo", "max_request_bytes": 5000000 }""");

        using var models = NewStack();
        await models.StartAsync();
        var errors = models.Catalog.Status.Errors;

        Assert.Equal(
            ["inputs[0].dims[0].colour", "inputs[0].dims[0].max", "inputs[0].dims[0].name", "inputs[0].dims[1].max", "inputs[0].dims[2]", "max_batch_bytes", "max_request_bytes"],
            errors.Where(e => e.Model == "limits" && e.Field is not null).Select(e => e.Field!).Order(StringComparer.Ordinal));
        Assert.Contains(errors, e => e.Model == "echo-batch" && e.Field == "max_batch_bytes" && e.Reason.Contains("tensor models only", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Model == "decoder-request" && e.Field == "max_request_bytes" && e.Reason.Contains("tensor and echo", StringComparison.Ordinal));
        Assert.DoesNotContain(errors, e => e.Model == "echo-limited");
        Assert.Equal(5_000_000, Model(models.Catalog.Status, "echo-limited").MaxRequestBytes);
    }

    [Fact]
    public async Task Load_AxisMaximaBadInMetadataOrOnOutputs_ReportedWithFileAndField()
    {
        TestModels.WriteImage(_root, "meta-not-a-number", metadata: new Dictionary<string, string> { ["streaminfer.axis_max.height"] = "tall" });
        TestModels.WriteImage(_root, "meta-no-such-axis", metadata: new Dictionary<string, string> { ["streaminfer.axis_max.depth"] = "8" });
        TestModels.WriteSequence(_root, "output-max", extraConfig: """, "outputs": [{ "name": "hidden", "dims": [{ "max": 16 }, 3] }]""");
        TestModels.WriteImage(_root, "fixed-axis-object", """, "inputs": [{ "name": "pixels", "dims": [{ "name": "channels" }, "height", "width"] }]""");

        using var models = NewStack();
        await models.StartAsync();
        var status = models.Catalog.Status;

        AssertFailed(status, "meta-not-a-number", "meta-not-a-number/1/model.onnx", null, "whole number of at least 1");
        AssertFailed(status, "meta-no-such-axis", "meta-no-such-axis/1/model.onnx", null, "names no dynamic axis");
        AssertFailed(status, "output-max", "output-max/config.json", "outputs[0].dims[0].max", "inputs only");
        AssertFailed(status, "fixed-axis-object", "fixed-axis-object/config.json", "inputs[0].dims[0]", "fixes it at 3");
    }

    public void Dispose() => _devices.Dispose();

    private ModelStack NewStack() => new(_root, _devices, builtInTinyLm: false);

    private void Write(string model, string? config)
    {
        Directory.CreateDirectory(Path.Combine(_root, model));
        if (config is not null)
        {
            File.WriteAllText(Path.Combine(_root, model, "config.json"), config);
        }
    }

    private static ModelInfo Model(RepositoryStatus status, string name) => Assert.Single(status.Models, m => m.Name == name);

    private static void AssertFailed(RepositoryStatus status, string model, string file, string? field, string reason)
    {
        var info = Model(status, model);
        Assert.Equal(ModelState.Failed, info.State);
        var error = Assert.Single(status.Errors, e => e.Model == model);
        Assert.Equal(file, error.File);
        Assert.Equal(field, error.Field);
        Assert.Contains(reason, error.Reason, StringComparison.Ordinal);
        Assert.Contains(error, info.Errors);
    }
}
