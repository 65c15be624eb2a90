using System.Collections.Concurrent;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Orleans.TestingHost;
using StreamInfer.Grains.Hosting;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Placement;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Sessions;

/// <summary>
/// A one-silo TestCluster for the sessions' sequence tests, with a virtual grain clock of its own (so that moving it
/// does not disturb <see cref="ClusterFixture"/>'s tests) and a record of what reached the batchers
/// (<see cref="BatcherCalls"/>): the order in which requests were enqueued, and the sequences ended.
/// </summary>
public sealed class SequenceClusterFixture : IAsyncLifetime
{
    public static readonly FakeTimeProvider Time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    /// <summary>The stateful test model (<see cref="TestModels.WriteStateful"/>) flushing a batch 10 s (virtual) after its
    /// first request: requests stay queued until the clock moves.</summary>
    public const string Held = "seq-held";

    /// <summary>The stateful test model flushing every request at once, alone.</summary>
    public const string Alone = "seq-alone";

    /// <summary>The sample rate every request sends.</summary>
    public const long SampleRate = 16000;

    public static readonly TimeSpan HeldWait = TimeSpan.FromSeconds(10);

    /// <summary>The sequences a client may have open at once.</summary>
    public const int MaxSequences = 4;

    /// <summary>The orphan grace the sessions use.</summary>
    public static readonly TimeSpan OrphanGrace = TimeSpan.FromHours(1);

    private static readonly IConfiguration Configuration = new ConfigurationBuilder()
        .AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["StreamInfer:Repository:Path"] = Repository(),
            ["StreamInfer:Session:RatePerSecond"] = "1000000",
            ["StreamInfer:Session:Burst"] = "1000000",
            ["StreamInfer:Session:BacklogCapacity"] = "64",
            ["StreamInfer:Session:DefaultTimeout"] = "00:10:00",
            ["StreamInfer:Session:MaxTimeout"] = "01:00:00",
            ["StreamInfer:Session:OrphanGrace"] = "01:00:00",
            ["StreamInfer:Session:MaxSequences"] = MaxSequences.ToString(System.Globalization.CultureInfo.InvariantCulture),
        })
        .Build();

    public TestCluster Cluster { get; private set; } = null!;

    private static string Repository()
    {
        var root = TestModels.NewRepository();
        TestModels.WriteStateful(root, Held, maxBatchSize: 1000, extraConfig: $", \"max_wait_ms\": {HeldWait.TotalMilliseconds}");
        TestModels.WriteStateful(root, Alone, maxBatchSize: 1);
        return root;
    }

    public IClusterClient Client => Cluster.Client;

    /// <summary>A session for a client id no other test uses.</summary>
    public IClientSessionGrain NewSession(out string clientId)
    {
        clientId = $"seq-{Guid.NewGuid():N}";
        return Client.GetGrain<IClientSessionGrain>(clientId);
    }

    /// <summary>The batcher key the single silo's sessions use for a model.</summary>
    public string BatcherKeyFor(string model)
    {
        var silo = Cluster.Primary!.SiloAddress;
        var name = SiloNames.ForKey(Cluster.GetSiloServiceProvider(silo).GetRequiredService<ILocalSiloDetails>().Name);
        return new BatcherKey(model, name, "cpu0").ToString();
    }

    /// <summary>The silo's name as batcher keys and admissions carry it.</summary>
    public string SiloKey => BatcherKey.Parse(BatcherKeyFor(Held)).Silo;

    public async Task InitializeAsync()
    {
        var builder = new TestClusterBuilder(1);
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        Cluster = builder.Build();
        await Cluster.DeployAsync();
        await Cluster.GetSiloServiceProvider(Cluster.Primary!.SiloAddress).GetRequiredService<ModelCatalog>().Loaded.WaitAsync(TimeSpan.FromSeconds(60));
    }

    public async Task DisposeAsync() => await Cluster.DisposeAsync();

    /// <summary>Moves the grain clock on; due timers fire (their ticks run on the grains afterwards).</summary>
    public static Task AdvanceAsync(TimeSpan by) => Task.Run(() => Time.Advance(by)).WaitAsync(TimeSpan.FromSeconds(30));

    private sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
        {
            siloBuilder.AddStreamInfer(Configuration);
            siloBuilder.Services.AddKeyedSingleton<TimeProvider>(StreamInferClock.Key, Time);
            siloBuilder.AddIncomingGrainCallFilter<BatcherCalls>();
        }
    }
}

/// <summary>
/// Records, on the silo, each request a batcher was asked to enqueue (by client, in arrival order) and each
/// <see cref="IBatcherGrain.EndSequencesAsync"/> call; the batchers themselves run unchanged. A session named in
/// <see cref="LoseCompletionsOf"/> never hears of its requests' completions (as when the call telling it is lost); one
/// named in <see cref="SlowCompletionsOf"/> hears of them late (as from a busy silo).
/// </summary>
public sealed class BatcherCalls : IIncomingGrainCallFilter
{
    private static readonly ConcurrentDictionary<string, bool> Deaf = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, bool> Slow = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, (TaskCompletionSource Arrived, TaskCompletionSource Release)> Gates = new(StringComparer.Ordinal);

    private static readonly ConcurrentDictionary<string, ConcurrentQueue<string>> Enqueued = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, ConcurrentQueue<(string Batcher, string[] Sequences)>> Ended = new(StringComparer.Ordinal);

    /// <summary>The request ids of <paramref name="clientId"/> that reached a batcher, in the order they did.</summary>
    public static IReadOnlyList<string> EnqueuedBy(string clientId) => [.. Enqueued.GetOrAdd(clientId, _ => new())];

    /// <summary>The <see cref="IBatcherGrain.EndSequencesAsync"/> calls made for <paramref name="clientId"/>.</summary>
    public static IReadOnlyList<(string Batcher, string[] Sequences)> EndedFor(string clientId) => [.. Ended.GetOrAdd(clientId, _ => new())];

    /// <summary>From now on, <paramref name="clientId"/>'s session's <see cref="IClientSessionGrain.CompletedAsync"/> calls fail.</summary>
    public static void LoseCompletionsOf(string clientId) => Deaf[clientId] = true;

    /// <summary>From now on, <paramref name="clientId"/>'s session hears of completions 200 ms after they were sent.</summary>
    public static void SlowCompletionsOf(string clientId) => Slow[clientId] = true;

    /// <summary>
    /// Holds <paramref name="clientId"/>'s next request at its batcher's door: <c>Arrived</c> completes when it gets
    /// there, and it goes in once <c>Release</c> is completed.
    /// </summary>
    public static (Task Arrived, TaskCompletionSource Release) GateNextEnqueueOf(string clientId)
    {
        var gate = (new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        Gates[clientId] = gate;
        return (gate.Item1.Task, gate.Item2);
    }

    public async Task Invoke(IIncomingGrainCallContext context)
    {
        switch (context.InterfaceMethod?.Name)
        {
            case nameof(IBatcherGrain.EnqueueAsync) when context.Request.GetArgument(0) is BatchItem item && Gates.TryRemove(item.ClientId, out var gate):
                Enqueued.GetOrAdd(item.ClientId, _ => new()).Enqueue(item.Request.RequestId);
                gate.Arrived.TrySetResult();
                await gate.Release.Task;
                break;
            case nameof(IClientSessionGrain.CompletedAsync) when Deaf.ContainsKey(context.TargetId.Key.ToString()!):
                throw new TimeoutException("the completion was lost.");
            case nameof(IClientSessionGrain.CompletedAsync) when Slow.ContainsKey(context.TargetId.Key.ToString()!):
                await Task.Delay(TimeSpan.FromMilliseconds(200));
                break;
            case nameof(IBatcherGrain.EnqueueAsync) when context.Request.GetArgument(0) is BatchItem item:
                // Recorded once the batcher took it (its batch's timer set): a test that moves the clock on seeing it
                // enqueued then flushes its batch.
                await context.Invoke();
                Enqueued.GetOrAdd(item.ClientId, _ => new()).Enqueue(item.Request.RequestId);
                return;
            case nameof(IBatcherGrain.EndSequencesAsync) when context.Request.GetArgument(0) is string clientId:
                var ids = (System.Collections.Immutable.ImmutableArray<string>)context.Request.GetArgument(1)!;
                Ended.GetOrAdd(clientId, _ => new()).Enqueue((context.TargetId.Key.ToString()!, [.. ids]));
                break;
        }

        await context.Invoke();
    }
}

[CollectionDefinition(Name)]
public sealed class SequenceClusterCollection : ICollectionFixture<SequenceClusterFixture>
{
    public const string Name = "sequence-cluster";
}
