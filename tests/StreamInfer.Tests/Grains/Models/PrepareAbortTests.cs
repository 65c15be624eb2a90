using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Models;

/// <summary>
/// An abort that comes while a version is still being prepared cancels it, and one that comes before its rollout's
/// prepare refuses that prepare: nothing loaded for an aborted rollout stays.
/// </summary>
public sealed class PrepareAbortTests : IAsyncLifetime
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
    public async Task Abort_WhilePrepareWaitsForTheDevice_PrepareEndsAbortedAndNothingStaysPrepared()
    {
        // The device is held, so the prepare cannot finish before the abort.
        using var gate = new ManualResetEventSlim();
        var device = _devices.Devices.Single();
        var jobsBefore = device.JobsStarted;
        var held = device.RunAsync(() => gate.Wait(TimeSpan.FromSeconds(30)));

        var prepare = _models.Rollout.PrepareAsync("scale", "2");
        await Eventually.UntilAsync(() => Task.FromResult(_models.Rollout.PreparingVersions("scale")), v => v.Contains("2"), what: "the prepare is under way");
        _models.Rollout.Abort("scale", "2");
        gate.Set();
        Assert.True(await held);
        var problems = await prepare.WaitAsync(TimeSpan.FromSeconds(30));

        // The version warms up at 4 batch sizes; the abort stops it after the one queued, or the one starting as it lands.
        var warmUps = device.JobsStarted - jobsBefore - 1;
        Assert.InRange(warmUps, 0, 2);
        var problem = Assert.Single(problems);
        Assert.Contains("aborted", problem.Reason, StringComparison.Ordinal);
        Assert.Empty(_models.Rollout.PreparedVersions("scale"));
        Assert.Empty(_models.Rollout.PreparingVersions("scale"));
        Assert.True(_models.Catalog.TryGet("scale", out var serving));
        Assert.Equal("1", serving.Version);

        // The version can still be prepared and committed afterwards.
        Assert.Empty(await _models.Rollout.PrepareAsync("scale", "2"));
        Assert.True(_models.Rollout.Commit("scale", "2"));
    }

    [Fact]
    public async Task Prepare_ArrivingAfterItsRolloutWasAborted_LoadsNothingAndALaterRolloutPrepares()
    {
        var device = _devices.Devices.Single();
        var jobsBefore = device.JobsStarted;
        _models.Rollout.Abort("scale", "2", "rollout-a");

        var problem = Assert.Single(await _models.Rollout.PrepareAsync("scale", "2", "rollout-a"));

        Assert.Contains("aborted", problem.Reason, StringComparison.Ordinal);
        Assert.Equal(jobsBefore, device.JobsStarted);
        Assert.Empty(_models.Rollout.PreparedVersions("scale"));
        Assert.Empty(_models.Rollout.PreparingVersions("scale"));
        Assert.Empty(await _models.Rollout.PrepareAsync("scale", "2", "rollout-b"));
        Assert.True(_models.Rollout.Commit("scale", "2"));
        Assert.True(_models.Catalog.TryGet("scale", out var serving));
        Assert.Equal("2", serving.Version);
    }

    [Fact]
    public async Task Abort_OfAnotherRollout_LeavesAPrepareUnderWayToFinish()
    {
        using var gate = new ManualResetEventSlim();
        var device = _devices.Devices.Single();
        var held = device.RunAsync(() => gate.Wait(TimeSpan.FromSeconds(30)));

        var prepare = _models.Rollout.PrepareAsync("scale", "2", "rollout-b");
        await Eventually.UntilAsync(() => Task.FromResult(_models.Rollout.PreparingVersions("scale")), v => v.Contains("2"), what: "the prepare is under way");
        _models.Rollout.Abort("scale", "2", "rollout-a");
        gate.Set();
        Assert.True(await held);

        Assert.Empty(await prepare.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal("2", Assert.Single(_models.Rollout.PreparedVersions("scale")));
    }

    [Fact]
    public async Task Abort_RemembersABoundedNumberOfRollouts_TheOldestIsForgotten()
    {
        for (var i = 0; i <= ModelRollout.AbortedRemembered; i++)
        {
            _models.Rollout.Abort("scale", "2", $"rollout-{i}");
        }

        Assert.Contains("aborted", Assert.Single(await _models.Rollout.PrepareAsync("scale", "2", "rollout-1")).Reason, StringComparison.Ordinal);
        Assert.Empty(await _models.Rollout.PrepareAsync("scale", "2", "rollout-0"));
    }

    [Fact]
    public void LongCalls_CarryResponseTimeoutsPastTheirOwnLimits()
    {
        static TimeSpan Timeout(Type grain, string method)
            => TimeSpan.Parse(Assert.Single(grain.GetMethod(method)!.GetCustomAttributes(typeof(ResponseTimeoutAttribute), false).Cast<ResponseTimeoutAttribute>()).Timeout.ToString()!, System.Globalization.CultureInfo.InvariantCulture);

        var prepare = TimeSpan.Parse(ModelVersionTimeouts.Prepare, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(Timeout(typeof(IModelHostGrain), nameof(IModelHostGrain.PrepareAsync)) > prepare);
        Assert.True(Timeout(typeof(IModelHostGrain), nameof(IModelHostGrain.AddModelAsync)) > prepare);
        Assert.True(Timeout(typeof(IModelVersionGrain), nameof(IModelVersionGrain.RolloutAsync)) > Timeout(typeof(IModelHostGrain), nameof(IModelHostGrain.PrepareAsync)));
        Assert.True(Timeout(typeof(IModelVersionGrain), nameof(IModelVersionGrain.RollbackAsync)) > Timeout(typeof(IModelHostGrain), nameof(IModelHostGrain.PrepareAsync)));
        Assert.True(Timeout(typeof(IRepositoryGrain), nameof(IRepositoryGrain.ReloadAsync)) > Timeout(typeof(IModelVersionGrain), nameof(IModelVersionGrain.RolloutAsync)));
    }
}
