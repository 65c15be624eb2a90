using StreamInfer.Grains.Models;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models;

/// <summary>One silo's rollout phases and repository changes, outside any cluster.</summary>
public sealed class ModelRolloutTests : IAsyncLifetime
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
    private readonly DeviceRegistry _devices = new(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
    private ModelStack _models = null!;

    public async Task InitializeAsync()
    {
        TestModels.WriteScale(_root, "scale", "1", 1f);
        TestModels.WriteScale(_root, "scale", "2", 2f);
        _models = new ModelStack(_root, _devices, builtInTinyLm: false);
        await _models.StartAsync();
    }

    public Task DisposeAsync()
    {
        _models.Dispose();
        _devices.Dispose();
        return Task.CompletedTask;
    }

    [Fact]
    public async Task Commit_PreparedVersion_ServesItAndReleasesTheOldOnce()
    {
        Assert.True(_models.Catalog.TryGet("scale", out var old));

        Assert.Empty(await _models.Rollout.PrepareAsync("scale", "2"));
        Assert.Equal("2", Assert.Single(_models.Rollout.PreparedVersions("scale")));
        Assert.True(_models.Catalog.TryGet("scale", out var stillServing));
        Assert.Equal("1", stillServing.Version);

        var inFlight = old.Leases["cpu0"];
        Assert.True(inFlight.TryAcquire());
        Assert.True(_models.Rollout.Commit("scale", "2"));

        Assert.True(_models.Catalog.TryGet("scale", out var serving));
        Assert.Equal("2", serving.Version);
        Assert.Empty(_models.Rollout.PreparedVersions("scale"));
        Assert.False(inFlight.Released);
        inFlight.Release();
        Assert.True(inFlight.Released);
    }

    [Fact]
    public void TryPublishLoaded_NameServedOrRemovedMeanwhile_LeavesTheCatalogAlone()
    {
        var options = new ModelOptions { Kind = "tensor", Version = "1" };
        Assert.True(_models.Catalog.TryGet("scale", out var serving));

        // A load that finishes after a rollout (or anything else) replaced its placeholder does not overwrite it...
        Assert.False(_models.Catalog.TryPublishLoaded(ModelEntry.Unloaded("scale", ModelKind.Tensor, "1", options, ModelState.Failed, [])));
        Assert.True(_models.Catalog.TryGet("scale", out var after));
        Assert.Same(serving, after);

        // ...nor brings back a name removed while it loaded...
        Assert.False(_models.Catalog.TryPublishLoaded(ModelEntry.Unloaded("gone", ModelKind.Tensor, "1", options, ModelState.Failed, [])));
        Assert.False(_models.Catalog.TryGet("gone", out _));

        // ...and replaces its own placeholder.
        _models.Catalog.Publish(ModelEntry.Unloaded("late", ModelKind.Tensor, "1", options, ModelState.Loading, []), []);
        var loaded = ModelEntry.Unloaded("late", ModelKind.Tensor, "1", options, ModelState.Failed, []);
        Assert.True(_models.Catalog.TryPublishLoaded(loaded));
        Assert.True(_models.Catalog.TryGet("late", out var late));
        Assert.Same(loaded, late);
    }

    [Fact]
    public async Task Abort_PreparedVersion_NothingLeftAndTheOldStillServes()
    {
        Assert.Empty(await _models.Rollout.PrepareAsync("scale", "2"));
        _models.Rollout.Abort("scale", "2");

        Assert.Empty(_models.Rollout.PreparedVersions("scale"));
        Assert.False(_models.Rollout.Commit("scale", "2"));
        Assert.True(_models.Catalog.TryGet("scale", out var serving));
        Assert.Equal("1", serving.Version);
    }

    [Theory]
    [InlineData("echo", "2", "an echo model has no versions")]
    [InlineData("nobody", "2", "no model named 'nobody'")]
    [InlineData("scale", "9", "missing")]
    public async Task Prepare_NothingToRollOut_RefusedWithTheReason(string model, string version, string reason)
    {
        var problems = await _models.Rollout.PrepareAsync(model, version);

        Assert.Contains(problems, p => p.Reason.Contains(reason, StringComparison.Ordinal));
        Assert.Empty(_models.Rollout.PreparedVersions(model));
    }

    [Fact]
    public void Remove_RepositoryModel_UnknownFromThenOnAndConfiguredOnesStay()
    {
        Assert.False(_models.Repository.Remove("echo"));
        Assert.True(_models.Repository.Remove("scale"));

        Assert.False(_models.Catalog.TryGet("scale", out _));
        Assert.True(_models.Catalog.TryGet("echo", out _));
        Assert.False(_models.Repository.Remove("scale"));
    }
}
