using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models;

/// <summary>
/// The decoder models on a device share one KV-cache budget: they load in name order while their <c>kv_cache_mb</c>
/// adds up within it, the ones past it fail naming the budget, and a released model gives its share back.
/// </summary>
public sealed class KvCacheBudgetTests : IDisposable
{
    private const string Device = "cpu0";
    private readonly string _root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
    private readonly DeviceRegistry _devices = new(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);

    [Fact]
    public async Task Load_DecodersPastTheDeviceBudget_FirstInNameOrderLoadAndTheRestFailNamingTheBudget()
    {
        WriteDecoder("a-lm", kvCacheMb: 2);
        WriteDecoder("b-lm", kvCacheMb: 2);
        WriteDecoder("c-lm", kvCacheMb: 2);
        WriteDecoder("d-lm", kvCacheMb: 1);
        TestModels.WriteSequence(_root, "e-tensor");

        using var models = new ModelStack(_root, _devices, builtInTinyLm: false, kvCacheBudgetMb: 5);
        await models.StartAsync();
        var status = models.Catalog.Status;

        Assert.Equal(ModelState.Ready, Model(status, "a-lm").State);
        Assert.Equal(ModelState.Ready, Model(status, "b-lm").State);
        Assert.Equal(ModelState.Failed, Model(status, "c-lm").State);
        Assert.Equal(ModelState.Ready, Model(status, "d-lm").State);
        Assert.Equal(ModelState.Ready, Model(status, "e-tensor").State);
        var error = Assert.Single(status.Errors, e => e.Model == "c-lm");
        Assert.Equal("kv_cache_mb", error.Field);
        Assert.Contains("to 6 MiB, past the device's budget of 5 MiB (StreamInfer:Devices:KvCacheBudgetMb)", error.Reason, StringComparison.Ordinal);
        Assert.Equal(5, models.KvCache.ReservedMb(Device));
    }

    [Fact]
    public async Task Remove_ServedDecoder_GivesItsShareBackAndANewDecoderLoads()
    {
        WriteDecoder("a-lm", kvCacheMb: 3);
        using var models = new ModelStack(_root, _devices, builtInTinyLm: false, kvCacheBudgetMb: 4);
        await models.StartAsync();
        WriteDecoder("b-lm", kvCacheMb: 3);

        var refused = await models.Repository.AddAsync("b-lm");
        Assert.Contains(refused, e => e.Field == "kv_cache_mb");
        Assert.Equal(3, models.KvCache.ReservedMb(Device));

        Assert.True(models.Repository.Remove("a-lm"));
        Assert.True(models.Repository.Remove("b-lm"));
        Assert.Equal(0, models.KvCache.ReservedMb(Device));
        Assert.Empty(await models.Repository.AddAsync("b-lm"));
        Assert.Equal(ModelState.Ready, Model(models.Catalog.Status, "b-lm").State);
        Assert.Equal(3, models.KvCache.ReservedMb(Device));
    }

    [Fact]
    public async Task Prepare_NewVersionOfADecoderOverHalfTheBudget_LoadsBesideTheOldAndTakesItsPlace()
    {
        WriteDecoder("a-lm", kvCacheMb: 3);
        using var models = new ModelStack(_root, _devices, builtInTinyLm: false, kvCacheBudgetMb: 4);
        await models.StartAsync();
        var versions = Directory.GetDirectories(Path.Combine(_root, "a-lm"));
        CopyFolder(Assert.Single(versions), Path.Combine(_root, "a-lm", "2"));

        Assert.Empty(await models.Rollout.PrepareAsync("a-lm", "2"));
        Assert.Equal(6, models.KvCache.ReservedMb(Device));
        Assert.True(models.Rollout.Commit("a-lm", "2"));

        await Eventually.UntilAsync(() => Task.FromResult(models.KvCache.ReservedMb(Device)), mb => mb == 3, what: "the old version's share given back");
        WriteDecoder("b-lm", kvCacheMb: 2);
        Assert.Contains(await models.Repository.AddAsync("b-lm"), e => e.Field == "kv_cache_mb");
    }

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }
    }

    [Fact]
    public void Budget_Unset_SharesTheProcessMemoryAmongTheDevices()
    {
        Assert.Equal(2048, new KvCacheBudget(0, 4, 8L << 30).PerDeviceMb);
        Assert.Equal(100, new KvCacheBudget(100, 4, 8L << 30).PerDeviceMb);
    }

    [Theory]
    [InlineData(-1L)]
    [InlineData((1L << 24) + 1)]
    public void Validate_KvCacheBudgetOutOfRange_FailsNamingTheRange(long budget)
    {
        var result = new DeviceOptionsValidator().Validate(null, new DeviceOptions { KvCacheBudgetMb = budget });

        Assert.True(result.Failed);
        Assert.Contains("StreamInfer:Devices:KvCacheBudgetMb must be in [0, 16777216]", result.FailureMessage, StringComparison.Ordinal);
        Assert.True(new DeviceOptionsValidator().Validate(null, new DeviceOptions { KvCacheBudgetMb = 1L << 24 }).Succeeded);
    }

    public void Dispose()
    {
        _devices.Dispose();
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }

    private static ModelInfo Model(RepositoryStatus status, string name) => Assert.Single(status.Models, m => m.Name == name);

    private void WriteDecoder(string name, int kvCacheMb)
    {
        var folder = Path.Combine(_root, name);
        TinyLm.Write(folder);
        var config = Path.Combine(folder, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"kind\"", $"\"kv_cache_mb\": {kvCacheMb}, \"kind\"", StringComparison.Ordinal));
    }
}
