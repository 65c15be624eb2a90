using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Operations;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Models.Repository;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models.Repository;

/// <summary>
/// Every numeric field of a model's config has a range: a value outside it fails that model, naming the field and its
/// range, while the others load; and whatever a model throws while it loads fails it alone.
/// </summary>
public sealed class ConfigBoundsTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
    private readonly DeviceRegistry _devices = new(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);

    [Fact]
    public async Task Load_FieldsPastTheirRange_EachModelFailsNamingItsFieldAndTheOthersLoad()
    {
        TestModels.WriteSequence(_root, "a-warmup-dims", extraConfig: """, "warmup_dims": {"seq": 1000000000}""");
        TestModels.WriteSequence(_root, "b-request-bytes", extraConfig: """, "max_request_bytes": 2199023255552""");
        TestModels.WriteSequence(_root, "c-batch-axis", extraConfig: """, "inputs": [{"name": "tokens", "batch_axis": 99}]""");
        TestModels.WriteSequence(_root, "d-dims", extraConfig: """, "inputs": [{"name": "tokens", "dims": [-1, 4294967296]}]""");
        TestModels.WriteSequence(_root, "e-warmup-sizes", extraConfig: $$""", "warmup_batch_sizes": [{{string.Join(",", Enumerable.Repeat(1, 65))}}]""");
        TestModels.WriteSequence(_root, "f-axis-max", extraConfig: """, "inputs": [{"name": "tokens", "dims": [{"name": "seq", "max": 4294967296}, 4]}]""");
        TestModels.WriteSequence(_root, "g-warmup-value", extraConfig: """, "inputs": [{"name": "mask", "warmup": 1e400}]""");
        TestModels.WriteSequence(_root, "good");

        using var models = NewStack();
        await models.StartAsync();
        var status = models.Catalog.Status;

        AssertFailed(status, "a-warmup-dims", "warmup_dims.seq", "[1, 1048576]");
        AssertFailed(status, "b-request-bytes", "max_request_bytes", "[1, 1099511627776]");
        AssertFailed(status, "c-batch-axis", "inputs[0].batch_axis", "[0, 31]");
        AssertFailed(status, "d-dims", "inputs[0].dims[1]", "[0, 2147483647]");
        AssertFailed(status, "e-warmup-sizes", "warmup_batch_sizes", "at most 64");
        AssertFailed(status, "f-axis-max", "inputs[0].dims[0].max", "[1, 2147483647]");
        Assert.Equal(ModelState.Failed, Model(status, "g-warmup-value").State);
        Assert.Equal(ModelState.Ready, Model(status, "good").State);
        Assert.False(status.Loading);
        Assert.True(HealthEndpoints.IsReady(status, draining: false));
    }

    [Fact]
    public async Task Load_KvCacheLargerThanMemory_FailsNamingKvCacheMbAndTheOthersLoad()
    {
        var available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        Assert.True(available is > 0 and < 1L << 40, "the machine has less than 1 TiB for the process");
        var decoder = Path.Combine(_root, "a-huge-cache");
        TinyLm.Write(decoder);
        File.WriteAllText(Path.Combine(decoder, "config.json"), File.ReadAllText(Path.Combine(decoder, "config.json")).Replace("\"kind\"", "\"kv_cache_mb\": 1048576, \"kind\"", StringComparison.Ordinal));
        TestModels.WriteSequence(_root, "good");

        using var models = NewStack();
        await models.StartAsync();
        var status = models.Catalog.Status;

        AssertFailed(status, "a-huge-cache", "kv_cache_mb", "memory the process may use");
        Assert.Equal(ModelState.Ready, Model(status, "good").State);
    }

    [Fact]
    public void Check_KvCacheOnEveryDevice_CountsEachDevice()
    {
        var definition = new ModelDefinition("lm", ModelKind.Decoder, "1", new ModelOptions(), null, null, new ModelConfig { Kind = "decoder", KvCacheMb = 512 });

        Assert.Null(MemoryChecks.Check(definition, 1, availableBytes: 1L << 30));
        var error = MemoryChecks.Check(definition, 4, availableBytes: 1L << 30);

        Assert.NotNull(error);
        Assert.Equal("kv_cache_mb", error.Field);
        Assert.Contains("4 devices", error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Load_WarmupThatThrows_FailsThatModelAloneAndTheModelsAfterItLoad()
    {
        // Four dynamic axes at the largest warm-up size each: the warm-up's element count overflows, which throws.
        var g = new OnnxGraphBuilder("a-throws");
        g.Input("x", TensorElementType.Float32, "batch", "a", "b", "c", "d");
        g.Node("Identity", ["x"], "y");
        g.Output("y", TensorElementType.Float32, "batch", "a", "b", "c", "d");
        g.Save(Path.Combine(_root, "a-throws", "1", "model.onnx"));
        File.WriteAllText(Path.Combine(_root, "a-throws", "config.json"), """
            { "kind": "tensor", "max_batch_size": 2, "warmup_dims": { "a": 1048576, "b": 1048576, "c": 1048576, "d": 1048576 } }
            """);
        TestModels.WriteSequence(_root, "b-after");
        TestModels.WriteLookup(_root, "c-after");

        using var models = NewStack();
        await models.StartAsync();
        var status = models.Catalog.Status;

        var failed = Model(status, "a-throws");
        Assert.Equal(ModelState.Failed, failed.State);
        var error = Assert.Single(failed.Errors);
        Assert.Equal("a-throws/1/model.onnx", error.File);
        Assert.Contains("OverflowException", error.Reason, StringComparison.Ordinal);
        Assert.Equal(ModelState.Ready, Model(status, "b-after").State);
        Assert.Equal(ModelState.Ready, Model(status, "c-after").State);
        Assert.DoesNotContain(status.Models, m => m.State == ModelState.Loading);
        Assert.True(HealthEndpoints.IsReady(status, draining: false));
    }

    [Fact]
    public async Task Load_WarmupPastMaxBatchBytes_FailsNamingWarmupDims()
    {
        TestModels.WriteSequence(_root, "big-warmup", extraConfig: """, "max_batch_bytes": 1024, "warmup_dims": {"seq": 1048576}""");

        using var models = NewStack();
        await models.StartAsync();

        var error = Assert.Single(models.Catalog.Status.Errors, e => e.Model == "big-warmup");
        Assert.Contains("max_batch_bytes", error.Reason, StringComparison.Ordinal);
        Assert.Contains("warmup_dims", error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Load_UnreadableModelFile_ReasonCarriesNoAbsolutePathAndTheClientsReasonOnlyWhere()
    {
        TestModels.WriteSequence(_root, "broken");
        File.WriteAllText(Path.Combine(_root, "broken", "1", "model.onnx"), "this is not a protobuf");

        using var models = NewStack();
        await models.StartAsync();
        var info = Model(models.Catalog.Status, "broken");

        var error = Assert.Single(info.Errors);
        Assert.DoesNotContain(_root, error.Reason, StringComparison.Ordinal);
        Assert.DoesNotContain(_root, error.ToString(), StringComparison.Ordinal);
        Assert.Contains(_root, error.Detail, StringComparison.Ordinal);
        var forClients = ModelLoadError.ForClients(info.Name, info.Errors);
        Assert.Equal("model 'broken' failed to load (at file 'broken/1/model.onnx'); the server's log says why.", forClients);
    }

    public void Dispose() => _devices.Dispose();

    private ModelStack NewStack() => new(_root, _devices, builtInTinyLm: false);

    private static ModelInfo Model(RepositoryStatus status, string name) => Assert.Single(status.Models, m => m.Name == name);

    private static void AssertFailed(RepositoryStatus status, string model, string field, string range)
    {
        Assert.Equal(ModelState.Failed, Model(status, model).State);
        var error = Assert.Single(status.Errors, e => e.Model == model && e.Field == field);
        Assert.Equal($"{model}/config.json", error.File);
        Assert.Contains(range, error.Reason, StringComparison.Ordinal);
    }
}
