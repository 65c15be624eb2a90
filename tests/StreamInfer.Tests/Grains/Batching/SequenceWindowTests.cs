using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Models.Stateful;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Grains.Models;
using StreamInfer.Tests.Grains.Models.Onnx;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Batching;

/// <summary>
/// Sequence windows at the batcher, on the built-in vad-lite with its shipped config (a window of 4 over
/// <c>output</c>, on at 0.5, off below 0.35): each result's window and events against the model's exact reference run
/// over that sequence alone, while another sequence batches beside it.
/// </summary>
public sealed class SequenceWindowTests(SequenceWindowTests.VadLiteModel vad) : IClassFixture<SequenceWindowTests.VadLiteModel>
{
    private const int Silent = 2, Loud = 6, After = 14;

    [Fact]
    public async Task Dispatch_LoudChunksThenSilence_WindowPerResultAndSpeechOnThenOff()
    {
        using var kit = new SchedulerTestKit(vad.Model, vad.Config);
        var talk = Script();
        var quiet = Enumerable.Repeat(Chunk(0f), talk.Length).ToArray();

        var windows = (Talk: new List<SequenceWindow>(), Quiet: new List<SequenceWindow>());
        for (var i = 0; i < talk.Length; i++)
        {
            Assert.Null(kit.Submit(Request("talk", i, talk[i], start: i == 0, end: i == talk.Length - 1), dispatch: false));
            Assert.Null(kit.Submit(Request("quiet", i, quiet[i], start: i == 0, end: false), dispatch: false));
            kit.Dispatch();
            var outcomes = await kit.NextAsync(2);
            Assert.All(outcomes, o => Assert.Equal(2, o.Delivery.Result!.Timing.BatchSize));
            windows.Talk.Add(outcomes.Single(o => o.Delivery.RequestId == $"talk-{i}").Delivery.Result!.Window!);
            windows.Quiet.Add(outcomes.Single(o => o.Delivery.RequestId == $"quiet-{i}").Delivery.Result!.Window!);
        }

        var expected = Expected(VadLiteReference.Run(talk));
        AssertWindows(expected, windows.Talk);
        AssertWindows(Expected(VadLiteReference.Run(quiet)), windows.Quiet);

        // Speech starts within the loud chunks and ends within the silence after them, once each; the quiet sequence
        // raises nothing.
        var events = windows.Talk.Where(w => w.Event is not null).Select(w => (w.Event, w.Index)).ToArray();
        Assert.Equal(2, events.Length);
        Assert.Equal(WindowEvents.On, events[0].Event);
        Assert.InRange(events[0].Index, Silent, Silent + Loud - 1);
        Assert.Equal(WindowEvents.Off, events[1].Event);
        Assert.InRange(events[1].Index, Silent + Loud, talk.Length - 1);
        Assert.DoesNotContain(windows.Quiet, w => w.Event is not null);
    }

    [Fact]
    public async Task Dispatch_SequenceStartsAgain_ItsWindowStartsEmpty()
    {
        using var kit = new SchedulerTestKit(vad.Model, vad.Config);
        var loud = Chunk(0.3f);
        for (var i = 0; i < 5; i++)
        {
            Assert.Null(kit.Submit(Request("a", i, loud, start: i == 0, end: i == 4)));
            await kit.NextAsync(1);
        }

        Assert.Null(kit.Submit(Request("a", 5, Chunk(0f), start: true, end: false)));
        var restarted = Assert.Single(await kit.NextAsync(1)).Delivery.Result!.Window!;

        var silence = VadLiteReference.Run([Chunk(0f)])[0];
        Assert.Equal(("output", 0, 1, (double)silence, (double)silence, (string?)null), (restarted.Output, restarted.Index, restarted.Count, restarted.Mean, restarted.Max, restarted.Event));
    }

    /// <summary>Silence, a loud tone, then silence again: 32 ms chunks at 16 kHz.</summary>
    private static float[][] Script()
        => [.. Enumerable.Repeat(0f, Silent).Concat(Enumerable.Repeat(0.3f, Loud)).Concat(Enumerable.Repeat(0f, After)).Select(Chunk)];

    /// <summary>A triangle wave of <paramref name="amplitude"/>, one chunk long.</summary>
    private static float[] Chunk(float amplitude)
        => [.. Enumerable.Range(0, VadLite.ChunkSamples).Select(i => amplitude * ((i % 32) < 16 ? (i % 32) / 8f - 1f : 3f - (i % 32) / 8f))];

    /// <summary>Each result's window recounted from the outputs of the sequence so far, and its events by the shipped
    /// thresholds.</summary>
    private static List<(int Count, double Mean, double Max, string? Event)> Expected(float[] outputs)
    {
        var expected = new List<(int, double, double, string?)>();
        var on = false;
        for (var i = 0; i < outputs.Length; i++)
        {
            var window = outputs.Take(i + 1).TakeLast(VadLite.WindowSize).Select(o => (double)o).ToArray();
            var mean = window.Average();
            string? raised = null;
            if (!on && mean >= VadLite.WindowOn)
            {
                (on, raised) = (true, WindowEvents.On);
            }
            else if (on && mean < VadLite.WindowOff)
            {
                (on, raised) = (false, WindowEvents.Off);
            }

            expected.Add((window.Length, mean, window.Max(), raised));
        }

        return expected;
    }

    private static void AssertWindows(List<(int Count, double Mean, double Max, string? Event)> expected, List<SequenceWindow> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.Equal("output", actual[i].Output);
            Assert.Equal(i, actual[i].Index);
            Assert.Equal(expected[i].Count, actual[i].Count);
            Assert.Equal(expected[i].Mean, actual[i].Mean, 1e-12);
            Assert.Equal(expected[i].Max, actual[i].Max);
            Assert.Equal(expected[i].Event, actual[i].Event);
        }
    }

    private static InferRequest Request(string sequence, int index, float[] samples, bool start, bool end)
        => new($"{sequence}-{index}", VadLite.Name, [
            new NamedTensor("input", Tensors.Floats([1, samples.Length], samples)),
            new NamedTensor("sr", BatchAxisTests.Int64([], VadLite.ReferenceSampleRate)),
        ], null, null, "fe", Sequence: new SequenceControl(sequence, start, end));

    /// <summary>The built-in vad-lite, written and loaded on the CPU with its shipped config, outside any cluster.</summary>
    public sealed class VadLiteModel : IAsyncLifetime, IDisposable
    {
        private readonly string _root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));
        private readonly DeviceRegistry _devices = new(Options.Create(new DeviceOptions { Gpus = "none" }), NullLoggerFactory.Instance);
        private ModelStack? _stack;

        internal OnnxSequenceModel Model { get; private set; } = null!;

        /// <summary>Its options, as its shipped config.json gives them.</summary>
        internal ModelOptions Config { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            VadLite.Write(Path.Combine(_root, VadLite.Name));
            _stack = new ModelStack(_root, _devices, builtInTinyLm: false);
            await _stack.StartAsync();
            Assert.True(_stack.Catalog.TryGet(VadLite.Name, out var entry) && entry.State == ModelState.Ready, string.Join("; ", _stack.Catalog.Status.Errors));
            Model = Assert.IsType<OnnxSequenceModel>(entry.Any);
            Config = entry.Options;
        }

        public Task DisposeAsync() => Task.CompletedTask;

        public void Dispose()
        {
            _stack?.Dispose();
            _devices.Dispose();
        }
    }
}
