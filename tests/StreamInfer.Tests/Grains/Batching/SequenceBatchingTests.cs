using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Batching;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Grains.Models;
using StreamInfer.Tests.Grains.Models.Onnx;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Batching;

/// <summary>
/// Sequence batching on its own, on the silero-shaped stateful <c>vad</c> test model: a fake clock, the model's real
/// runs, no cluster. Each chunk's outputs are checked against the model's arithmetic run over that sequence alone.
/// </summary>
public sealed class SequenceBatchingTests(SequenceBatchingTests.Models models) : IClassFixture<SequenceBatchingTests.Models>
{
    private const float NextDecay = 0.25f;

    private static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(2);

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(3, 2)]
    [InlineData(4, 3)]
    public async Task Dispatch_SequencesInterleaved_EachChunkEqualsItsSequenceRunAlone(int seed, int rates)
    {
        using var kit = Kit(maxBatchSize: 4);
        var open = models.Vad.OpenStates;
        var random = new Random(seed);
        const int Sequences = 6, Chunks = 5;
        var chunks = Enumerable.Range(0, Sequences).Select(s => Enumerable.Range(0, Chunks).Select(_ => Samples(random, 4)).ToArray()).ToArray();
        var rate = Enumerable.Range(0, Sequences).Select(s => 8000L * (1 + (s % rates))).ToArray();

        // Chunks of one length: the model has no mask, so padding would change a mean. A random interleaving of the sequences' chunks, each sequence's in its own order; submitted in waves with
        // several chunks of one sequence queued at once, so that they wait behind each other.
        var next = new int[Sequences];
        var order = new List<int>();
        while (order.Count < Sequences * Chunks)
        {
            var s = random.Next(Sequences);
            if (next[s] < Chunks)
            {
                order.Add(s);
                next[s]++;
            }
        }

        Array.Clear(next);
        var outcomes = new List<RequestOutcome>();
        foreach (var wave in order.Chunk(1 + random.Next(12)))
        {
            foreach (var s in wave)
            {
                var i = next[s]++;
                Assert.Null(kit.Submit(Chunk($"s{s}", i, chunks[s][i], rate[s], start: i == 0, end: i == Chunks - 1), dispatch: false));
            }

            kit.Dispatch();
            outcomes.AddRange(await kit.NextAsync(wave.Length));
        }

        for (var s = 0; s < Sequences; s++)
        {
            var state = new float[2 * TestModels.StateWidth];
            for (var i = 0; i < Chunks; i++)
            {
                var delivery = outcomes.Single(o => o.Delivery.RequestId == $"s{s}-{i}").Delivery;
                Assert.Null(delivery.Error);
                (state, var output) = TestModels.StatefulStep(state, chunks[s][i], rate[s]);
                var outputs = delivery.Result!.Outputs;
                Assert.Equal(["output"], outputs.Select(o => o.Name));
                BatchAxisTests.AssertClose([output], BatchAxisTests.Floats(outputs[0].Tensor));
            }
        }

        Assert.Equal(0, Scheduler(kit).Held);
        Assert.Equal(open, models.Vad.OpenStates);
    }

    [Fact]
    public async Task Dispatch_ChunksOfOneSequenceQueuedTogether_RunOnePerBatchInOrder()
    {
        using var kit = Kit(maxBatchSize: 8);
        var random = new Random(11);
        var chunks = Enumerable.Range(0, 4).Select(_ => Samples(random, 3)).ToArray();
        for (var i = 0; i < chunks.Length; i++)
        {
            Assert.Null(kit.Submit(Chunk("a", i, chunks[i], 16000, start: i == 0, end: false), dispatch: false));
        }

        Assert.Null(kit.Submit(Chunk("b", 0, chunks[0], 16000, start: true, end: false), dispatch: false));
        kit.Dispatch();
        var outcomes = await kit.NextAsync(5);

        // "a"'s chunks ran in four batches; "b" beside its first.
        Assert.Equal(2, outcomes.Single(o => o.Delivery.RequestId == "a-0").Delivery.Result!.Timing.BatchSize);
        Assert.All(outcomes.Where(o => o.Delivery.RequestId is "a-1" or "a-2" or "a-3"), o => Assert.Equal(1, o.Delivery.Result!.Timing.BatchSize));
        Assert.Equal(4, kit.Scheduler.Stats.BatchesRun);
        var state = new float[2 * TestModels.StateWidth];
        for (var i = 0; i < chunks.Length; i++)
        {
            (state, var output) = TestModels.StatefulStep(state, chunks[i], 16000);
            var result = outcomes.Single(o => o.Delivery.RequestId == $"a-{i}").Delivery.Result!;
            BatchAxisTests.AssertClose([output], BatchAxisTests.Floats(result.Outputs[0].Tensor));
        }

        Assert.Equal(2, Scheduler(kit).Held);
    }

    [Fact]
    public async Task Check_SequenceMisuse_RefusedWithItsCode()
    {
        using var kit = Kit(maxBatchSize: 4, maxSequences: 2);
        var samples = new float[] { 1, 2 };
        Assert.Null(kit.Submit(Chunk("a", 0, samples, 16000, start: true, end: false)));
        await kit.NextAsync(1);

        var exists = kit.Submit(Chunk("a", 1, samples, 16000, start: true, end: false));
        var unknown = kit.Submit(Chunk("nope", 0, samples, 16000, start: false, end: false));
        var otherClient = kit.Submit(Chunk("a", 2, samples, 16000, start: false, end: false), client: "other");
        var none = kit.Submit(Chunk("a", 3, samples, 16000, start: false, end: false) with { Sequence = null });
        var withState = Chunk("a", 4, samples, 16000, start: false, end: false);
        var sentState = kit.Submit(withState with { Inputs = withState.Inputs.Add(new NamedTensor("state", Tensors.Floats([2, 1, TestModels.StateWidth], new float[2 * TestModels.StateWidth]))) });

        Assert.Equal(ErrorCode.SequenceExists, exists?.Code);
        Assert.Equal(ErrorCode.UnknownSequence, unknown?.Code);
        Assert.Contains("'nope'", unknown!.Message, StringComparison.Ordinal);
        Assert.Equal(ErrorCode.UnknownSequence, otherClient?.Code);
        Assert.Equal(ErrorCode.InvalidInput, none?.Code);
        Assert.Contains("sequence_id", none!.Message, StringComparison.Ordinal);
        Assert.Equal(ErrorCode.InvalidInput, sentState?.Code);
        Assert.Contains("'state'", sentState!.Message, StringComparison.Ordinal);

        Assert.Null(kit.Submit(Chunk("b", 0, samples, 16000, start: true, end: false)));
        await kit.NextAsync(1);
        var full = kit.Submit(Chunk("c", 0, samples, 16000, start: true, end: false));
        Assert.Equal(ErrorCode.Overloaded, full?.Code);
        Assert.InRange(full!.RetryAfterMs ?? 0, 1, (int)IdleTimeout.TotalMilliseconds);
    }

    [Fact]
    public async Task Dispatch_IdleTimeoutPasses_SequenceExpiresAndItsNextRequestIsUnknown()
    {
        using var kit = Kit(maxBatchSize: 4);
        var samples = new float[] { 1, 2 };
        Assert.Null(kit.Submit(Chunk("a", 0, samples, 16000, start: true, end: false)));
        await kit.NextAsync(1);
        var idleSince = kit.Time.GetUtcNow();

        // It asks to be woken when the sequence expires.
        Assert.Equal(idleSince + IdleTimeout, kit.Dispatch());
        kit.Time.Advance(IdleTimeout - TimeSpan.FromMilliseconds(1));
        kit.Dispatch();
        Assert.Equal(1, Scheduler(kit).Held);
        Assert.Null(kit.Submit(Chunk("a", 1, samples, 16000, start: false, end: false)));
        await kit.NextAsync(1);

        // Its last request restarted the idle clock.
        kit.Time.Advance(IdleTimeout);
        kit.Dispatch();
        Assert.Equal(0, Scheduler(kit).Held);
        Assert.Equal(ErrorCode.UnknownSequence, kit.Submit(Chunk("a", 2, samples, 16000, start: false, end: false))?.Code);
        Assert.Null(kit.Submit(Chunk("a", 3, samples, 16000, start: true, end: false)));
        await kit.NextAsync(1);
    }

    [Fact]
    public async Task EndSequences_FreesTheSequence_ItsQueuedRequestsEndUnknownAndItMayStartAgain()
    {
        using var kit = Kit(maxBatchSize: 4);
        var open = models.Vad.OpenStates;
        var random = new Random(3);
        Assert.Null(kit.Submit(Chunk("a", 0, Samples(random, 2), 16000, start: true, end: false)));
        await kit.NextAsync(1);
        Assert.Null(kit.Submit(Chunk("a", 1, Samples(random, 2), 16000, start: false, end: false), dispatch: false));

        kit.Scheduler.EndSequences("client", ["a", "never-started"]);
        kit.Dispatch();

        var orphan = Assert.Single(await kit.NextAsync(1));
        Assert.Equal(ErrorCode.UnknownSequence, orphan.Delivery.Error?.Code);
        Assert.Equal(0, Scheduler(kit).Held);
        Assert.Equal(open, models.Vad.OpenStates);

        // Started again, it starts from the initial state.
        var first = Samples(random, 2);
        Assert.Null(kit.Submit(Chunk("a", 2, first, 16000, start: true, end: true)));
        var restarted = Assert.Single(await kit.NextAsync(1)).Delivery.Result!;
        BatchAxisTests.AssertClose([TestModels.StatefulStep(new float[2 * TestModels.StateWidth], first, 16000).Output], BatchAxisTests.Floats(restarted.Outputs[0].Tensor));
    }

    [Fact]
    public async Task Dispatch_StartAndEndInputs_FilledPerRowWithTheSequencesFlags()
    {
        using var kit = new SchedulerTestKit(models.Flags, new ModelOptions { MaxBatchSize = 4, Sequence = new SequenceOptions() });
        var samples = new float[] { 1, 3 };
        Assert.Null(kit.Submit(Chunk("a", 0, samples, 16000, start: true, end: false), dispatch: false));
        Assert.Null(kit.Submit(Chunk("b", 0, samples, 16000, start: true, end: true), dispatch: false));
        kit.Dispatch();
        var first = await kit.NextAsync(2);
        Assert.Null(kit.Submit(Chunk("a", 1, samples, 16000, start: false, end: false)));
        var middle = Assert.Single(await kit.NextAsync(1));

        var zero = new float[2 * TestModels.StateWidth];
        var (afterStart, startOutput) = TestModels.StatefulStep(zero, samples, 16000, first: true);
        AssertOutput(TestModels.StatefulStep(afterStart, samples, 16000).Output, middle);
        AssertOutput(startOutput, first.Single(o => o.Delivery.RequestId == "a-0"));
        AssertOutput(TestModels.StatefulStep(zero, samples, 16000, first: true, last: true).Output, first.Single(o => o.Delivery.RequestId == "b-0"));
    }

    [Fact]
    public async Task Dispatch_RolloutWhileSequenceRuns_SequenceFinishesOnItsVersionAndHoldsItUntilItEnds()
    {
        using var kit = Kit(maxBatchSize: 4);
        var released = false;
        var before = new ModelLease(models.Vad, _ => released = true);
        var after = new ModelLease(models.Next, _ => { });
        var samples = new float[] { 2, 4 };
        Assert.Null(kit.Submit(Chunk("old", 0, samples, 16000, start: true, end: false), lease: before));
        await kit.NextAsync(1);

        // The rollout commits: the catalog drops its hold on the old version, and new requests meet the new one.
        before.Release();
        Assert.Null(kit.Submit(Chunk("old", 1, samples, 16000, start: false, end: false), dispatch: false, lease: after));
        Assert.Null(kit.Submit(Chunk("new", 0, samples, 16000, start: true, end: false), dispatch: false, lease: after));
        kit.Dispatch();
        var outcomes = await kit.NextAsync(2);

        var zero = new float[2 * TestModels.StateWidth];
        var (state, _) = TestModels.StatefulStep(zero, samples, 16000);
        AssertOutput(TestModels.StatefulStep(state, samples, 16000).Output, outcomes.Single(o => o.Delivery.RequestId == "old-1"));
        AssertOutput(TestModels.StatefulStep(zero, samples, 16000, decay: NextDecay).Output, outcomes.Single(o => o.Delivery.RequestId == "new-0"));
        Assert.False(released);

        Assert.Null(kit.Submit(Chunk("old", 2, samples, 16000, start: false, end: true), lease: after));
        await kit.NextAsync(1);
        Assert.True(released);
    }

    [Fact]
    public void Run_OneRequestFails_ItsSequenceKeepsItsStateAndItsBatchMateAdvances()
    {
        var vad = models.Vad;
        var (a, b) = (vad.Open(), vad.Open());
        var samples = new float[] { 1, 2, 3 };
        var good = Chunk("a", 0, samples, 16000, start: true, end: false);
        var bad = Chunk("b", 0, samples, 16000, start: true, end: false);
        bad = bad with { Inputs = bad.Inputs.SetItem(0, new NamedTensor("input", Tensors.Floats([1, 3], 1, 2))) };

        var outcomes = vad.Run([good, bad], [a, b]);
        var again = vad.Run([Chunk("a", 1, samples, 16000, start: false, end: false), Chunk("b", 1, samples, 16000, start: false, end: false)], [a, b]);

        Assert.Null(outcomes[0].Error);
        Assert.NotNull(outcomes[1].Error);
        var zero = new float[2 * TestModels.StateWidth];
        var (afterOne, _) = TestModels.StatefulStep(zero, samples, 16000);
        BatchAxisTests.AssertClose([TestModels.StatefulStep(afterOne, samples, 16000).Output], BatchAxisTests.Floats(again[0], "output"));
        BatchAxisTests.AssertClose([TestModels.StatefulStep(zero, samples, 16000).Output], BatchAxisTests.Floats(again[1], "output"));
        vad.Close(a);
        vad.Close(b);
    }

    [Fact]
    public async Task Dispatch_EndExpiresQueued_SequenceClosesAndMayStartAgain()
    {
        using var kit = Kit(maxBatchSize: 4);
        var open = models.Vad.OpenStates;
        var samples = new float[] { 1, 2 };
        Assert.Null(kit.Submit(Chunk("a", 0, samples, 16000, start: true, end: false)));
        await kit.NextAsync(1);

        Assert.Null(kit.Submit(Chunk("a", 1, samples, 16000, start: false, end: true), timeout: TimeSpan.FromMilliseconds(5), dispatch: false));
        kit.Time.Advance(TimeSpan.FromMilliseconds(10));
        kit.Dispatch();

        Assert.Equal(ErrorCode.DeadlineExceeded, Assert.Single(await kit.NextAsync(1)).Delivery.Error?.Code);
        Assert.Equal(0, Scheduler(kit).Held);
        Assert.Equal(open, models.Vad.OpenStates);

        // The session forgot the sequence with its end: the client's next start of that id starts afresh.
        Assert.Null(kit.Submit(Chunk("a", 2, samples, 16000, start: true, end: false)));
        AssertOutput(TestModels.StatefulStep(new float[2 * TestModels.StateWidth], samples, 16000).Output, Assert.Single(await kit.NextAsync(1)));
    }

    [Fact]
    public async Task Dispatch_EndExpiresWhileItsSequenceRuns_SequenceClosesOnceThatRequestRan()
    {
        using var kit = Kit(maxBatchSize: 4);
        var open = models.Vad.OpenStates;
        var samples = new float[] { 1, 2 };
        using var device = new ManualResetEventSlim();
        var blocker = Block(kit, device);
        Assert.Null(kit.Submit(Chunk("a", 0, samples, 16000, start: true, end: false)));
        Assert.Null(kit.Submit(Chunk("a", 1, samples, 16000, start: false, end: true), timeout: TimeSpan.FromMilliseconds(5), dispatch: false));
        kit.Time.Advance(TimeSpan.FromMilliseconds(10));
        kit.Dispatch();
        Assert.Equal(ErrorCode.DeadlineExceeded, Assert.Single(await kit.NextAsync(1)).Delivery.Error?.Code);
        Assert.Equal(1, Scheduler(kit).Held);

        device.Set();
        Assert.True(await blocker);
        Assert.Null(Assert.Single(await kit.NextAsync(1)).Delivery.Error);
        Assert.Equal(0, Scheduler(kit).Held);
        Assert.Equal(open, models.Vad.OpenStates);
    }

    [Fact]
    public async Task Dispatch_StartExpiresQueued_NothingOfTheSequenceIsKept()
    {
        using var kit = Kit(maxBatchSize: 4, maxSequences: 1);
        var open = models.Vad.OpenStates;
        var samples = new float[] { 1, 2 };
        Assert.Null(kit.Submit(Chunk("a", 0, samples, 16000, start: true, end: false), timeout: TimeSpan.FromMilliseconds(5), dispatch: false));
        kit.Time.Advance(TimeSpan.FromMilliseconds(10));
        kit.Dispatch();

        Assert.Equal(ErrorCode.DeadlineExceeded, Assert.Single(await kit.NextAsync(1)).Delivery.Error?.Code);
        Assert.Equal(0, Scheduler(kit).Held);
        Assert.Equal(open, models.Vad.OpenStates);

        // Its slot is free at once (max_sequences is 1), not after the idle timeout.
        Assert.Null(kit.Submit(Chunk("b", 0, samples, 16000, start: true, end: true)));
        Assert.Null(Assert.Single(await kit.NextAsync(1)).Delivery.Error);
    }

    [Fact]
    public async Task Cancel_QueuedEnd_SequenceKeptAndGoesOnFromItsState()
    {
        using var kit = Kit(maxBatchSize: 4);
        var open = models.Vad.OpenStates;
        var samples = new float[] { 1, 2 };
        Assert.Null(kit.Submit(Chunk("a", 0, samples, 16000, start: true, end: false)));
        await kit.NextAsync(1);
        Assert.Null(kit.Submit(Chunk("a", 1, samples, 16000, start: false, end: true), dispatch: false));

        Cancel(kit, "a-1");

        Assert.Equal(1, Scheduler(kit).Held);
        Assert.Null(kit.Submit(Chunk("a", 2, samples, 16000, start: false, end: true)));
        var (afterOne, _) = TestModels.StatefulStep(new float[2 * TestModels.StateWidth], samples, 16000);
        AssertOutput(TestModels.StatefulStep(afterOne, samples, 16000).Output, Assert.Single(await kit.NextAsync(1)));
        Assert.Equal(0, Scheduler(kit).Held);
        Assert.Equal(open, models.Vad.OpenStates);
    }

    [Fact]
    public async Task Abort_WhileASequenceRuns_ItsStateGoesBackOnceItRan()
    {
        using var kit = Kit(maxBatchSize: 4);
        var open = models.Vad.OpenStates;
        using var device = new ManualResetEventSlim();
        var blocker = Block(kit, device);
        Assert.Null(kit.Submit(Chunk("a", 0, [1, 2], 16000, start: true, end: false)));

        kit.Scheduler.Abort();
        Assert.Equal(0, Scheduler(kit).Held);
        device.Set();
        Assert.True(await blocker);
        await kit.NextAsync(1);
        await kit.Scheduler.WhenIdleAsync().WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(open, models.Vad.OpenStates);
    }

    [Fact]
    public async Task Admit_QueueFullOrDeadlineTooShort_RefusesOnlyStarts()
    {
        using var kit = new SchedulerTestKit(models.Vad, new ModelOptions
        {
            MaxBatchSize = 4,
            QueueCapacity = 1,
            Sequence = new SequenceOptions { IdleTimeout = IdleTimeout },
        });
        var samples = new float[] { 1, 2 };
        Assert.Null(kit.Submit(Chunk("a", 0, samples, 16000, start: true, end: false)));
        await kit.NextAsync(1);
        Assert.Null(kit.Submit(Chunk("b", 0, samples, 16000, start: true, end: false), dispatch: false));

        var full = kit.Submit(Chunk("c", 0, samples, 16000, start: true, end: false), dispatch: false);
        var next = kit.Submit(Chunk("a", 1, samples, 16000, start: false, end: false), dispatch: false);
        var late = kit.Submit(Chunk("a", 2, samples, 16000, start: false, end: false), timeout: TimeSpan.Zero, dispatch: false);
        var lateStart = kit.Submit(Chunk("d", 0, samples, 16000, start: true, end: false), timeout: TimeSpan.Zero, dispatch: false);

        Assert.Equal(ErrorCode.Overloaded, full?.Code);
        Assert.Null(next);
        Assert.Null(late);
        Assert.Equal(ErrorCode.Overloaded, lateStart?.Code);
    }

    [Fact]
    public void Admit_SequencesVersionGone_UnknownSequenceRatherThanStale()
    {
        using var kit = Kit(maxBatchSize: 4);
        var before = new ModelLease(models.Vad, _ => { });
        var samples = new float[] { 1, 2 };
        Assert.Null(kit.Submit(Chunk("a", 0, samples, 16000, start: true, end: false), lease: before, dispatch: false));

        // Every hold dropped, the sequence's own included: a lookup of the serving version would find the same one.
        before.Release();
        before.Release();
        before.Release();
        Assert.True(before.Released);

        Assert.Equal(ErrorCode.UnknownSequence, kit.Submit(Chunk("a", 1, samples, 16000, start: false, end: false), dispatch: false)?.Code);
    }

    [Fact]
    public async Task Dispatch_ChunksOfDifferentLengthsWithoutMask_EachRunsUnpaddedAsItsSequenceAlone()
    {
        using var kit = Kit(maxBatchSize: 4);
        var random = new Random(5);
        var lengths = new[] { 2, 5, 2, 7 };
        var chunks = lengths.Select(n => new[] { Samples(random, n), Samples(random, n) }).ToArray();
        for (var round = 0; round < 2; round++)
        {
            for (var s = 0; s < lengths.Length; s++)
            {
                Assert.Null(kit.Submit(Chunk($"s{s}", round, chunks[s][round], 16000, start: round == 0, end: round == 1), dispatch: false));
            }

            kit.Dispatch();
            var outcomes = await kit.NextAsync(lengths.Length);
            for (var s = 0; s < lengths.Length; s++)
            {
                var state = new float[2 * TestModels.StateWidth];
                var output = 0f;
                for (var i = 0; i <= round; i++)
                {
                    (state, output) = TestModels.StatefulStep(state, chunks[s][i], 16000);
                }

                AssertOutput(output, outcomes.Single(o => o.Delivery.RequestId == $"s{s}-{round}"));
            }
        }
    }

    [Fact]
    public void Check_SequenceForStatelessModel_RefusedInvalidInput()
    {
        using var model = new RecordingModel();
        using var kit = new SchedulerTestKit(model, new ModelOptions { MaxBatchSize = 4 });

        var refused = kit.Submit(new InferRequest("r", model.Name, [], null, null, "fe", Sequence: new SequenceControl("s", true, false)));

        Assert.Equal(ErrorCode.InvalidInput, refused?.Code);
        Assert.Contains("stateless", refused!.Message, StringComparison.Ordinal);
    }

    private SchedulerTestKit Kit(int maxBatchSize, int maxSequences = 64) => new(models.Vad, new ModelOptions
    {
        MaxBatchSize = maxBatchSize,
        Sequence = new SequenceOptions { IdleTimeout = IdleTimeout, MaxSequences = maxSequences },
    });

    private static void AssertOutput(float expected, RequestOutcome outcome)
    {
        Assert.Null(outcome.Delivery.Error);
        BatchAxisTests.AssertClose([expected], BatchAxisTests.Floats(outcome.Delivery.Result!.Outputs.Single(o => o.Name == "output").Tensor));
    }

    /// <summary>Holds the device's thread until <paramref name="device"/> is set: what is dispatched meanwhile waits there.</summary>
    private static Task<bool> Block(SchedulerTestKit kit, ManualResetEventSlim device) => kit.Device.RunAsync(() => device.Wait(TimeSpan.FromSeconds(30)));

    /// <summary>Cancels queued requests as the batcher does.</summary>
    private static void Cancel(SchedulerTestKit kit, params string[] ids)
    {
        foreach (var id in ids)
        {
            Assert.True(kit.Queue.TryForget(("client", id), out var q));
            q.Cancelled = true;
        }

        foreach (var q in kit.Queue.RemoveCancelled())
        {
            q.End();
        }
    }

    private static SequenceBatching Scheduler(SchedulerTestKit kit) => Assert.IsType<SequenceBatching>(kit.Scheduler);

    private static float[] Samples(Random random, int count) => [.. Enumerable.Range(0, count).Select(_ => random.Next(-8, 9) / 4f)];

    private static InferRequest Chunk(string sequence, int index, float[] samples, long sr, bool start, bool end)
        => new($"{sequence}-{index}", "vad", [
            new NamedTensor("input", Tensors.Floats([1, samples.Length], samples)),
            new NamedTensor("sr", BatchAxisTests.Int64([], sr)),
        ], null, null, "fe", Sequence: new SequenceControl(sequence, start, end));

    /// <summary>The stateful <c>vad</c> model loaded on the CPU, outside any cluster.</summary>
    public sealed class Models : IAsyncLifetime, IDisposable
    {
        private readonly string _root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        private readonly DeviceRegistry _devices = new(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
        private ModelStack? _stack;

        internal OnnxSequenceModel Vad { get; private set; } = null!;

        /// <summary>The same model with another decay: a later version.</summary>
        internal OnnxSequenceModel Next { get; private set; } = null!;

        /// <summary>The model with start and end flag inputs.</summary>
        internal OnnxSequenceModel Flags { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            TestModels.WriteStateful(_root);
            TestModels.WriteStateful(_root, "vad-next", decay: NextDecay);
            TestModels.WriteStateful(_root, "vad-flags", flags: true);
            _stack = new ModelStack(_root, _devices, builtInTinyLm: false);
            await _stack.StartAsync();
            Vad = Load("vad");
            Next = Load("vad-next");
            Flags = Load("vad-flags");
        }

        private OnnxSequenceModel Load(string name)
        {
            Assert.True(_stack!.Catalog.TryGet(name, out var entry), $"{name} is in the catalog");
            Assert.True(entry.State == ModelState.Ready, string.Join("; ", _stack.Catalog.Status.Errors));
            Assert.True(entry.ToInfo().Stateful);
            return Assert.IsType<OnnxSequenceModel>(entry.Any);
        }

        public Task DisposeAsync() => Task.CompletedTask;

        public void Dispose()
        {
            _stack?.Dispose();
            _devices.Dispose();
        }
    }
}
