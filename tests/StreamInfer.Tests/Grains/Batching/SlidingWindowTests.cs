using System.Collections.Immutable;
using StreamInfer.Grains.Batching;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Batching;

/// <summary>A sequence's sliding window on its own: mean and maximum against a recount of the last values, and the
/// hysteresis of its events.</summary>
public sealed class SlidingWindowTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 2)]
    [InlineData(8, 3)]
    [InlineData(64, 4)]
    public void Add_RandomValues_MeanAndMaxOfTheLastSizeValues(int size, int seed)
    {
        var window = new SlidingWindow(new WindowOptions { Output = "p", Size = size });
        var random = new Random(seed);
        var values = new List<float>();
        for (var i = 0; i < 5 * size + 7; i++)
        {
            // Large and small values mixed, and runs of equal ones, so that the maximum leaves the window often.
            var value = random.Next(4) == 0 ? values.LastOrDefault() : (float)(random.NextDouble() * Math.Pow(10, random.Next(-3, 4)));
            values.Add(value);

            var result = window.Add(Row(value));

            var last = values.TakeLast(size).Select(v => (double)v).ToArray();
            Assert.Equal(i, result.Index);
            Assert.Equal(last.Length, result.Count);
            Assert.Equal(last.Average(), result.Mean, 1e-12 * Math.Max(1, last.Max()));
            Assert.Equal(last.Max(), result.Max);
            Assert.Null(result.Event);
        }
    }

    [Fact]
    public void Add_MeanCrossesOnThenFallsBelowOff_OneEventEachWay()
    {
        var window = new SlidingWindow(new WindowOptions { Output = "p", Size = 2, On = 0.5, Off = 0.25 });
        float[] values = [0.125f, 0.875f, 0.875f, 0.375f, 0.375f, 0.125f, 0.375f, 0f, 1f, 0f, 0f];

        var events = values.Select(v => window.Add(Row(v))).Where(w => w.Event is not null).Select(w => (w.Event, w.Index)).ToArray();

        // Means: 0.125, 0.5 (on), 0.875, 0.625, 0.375 (between the two: stays on), 0.25 and 0.25 (not below off),
        // 0.1875 (off), 0.5 (on), 0.5, 0 (off).
        Assert.Equal([(WindowEvents.On, 1), (WindowEvents.Off, 7), (WindowEvents.On, 8), (WindowEvents.Off, 10)], events);
    }

    [Fact]
    public void Add_LastResultWhileOn_RaisesOff()
    {
        var window = new SlidingWindow(new WindowOptions { Output = "p", Size = 2, On = 0.5, Off = 0.25 });
        Assert.Equal(WindowEvents.On, window.Add(Row(1f)).Event);
        Assert.Null(window.Add(Row(1f)).Event);

        var last = window.Add(Row(1f), last: true);

        Assert.Equal(WindowEvents.Off, last.Event);
        Assert.Equal(1.0, last.Mean);
    }

    [Fact]
    public void Add_LastResultWouldTurnOn_RaisesNothing()
    {
        var window = new SlidingWindow(new WindowOptions { Output = "p", Size = 2, On = 0.5, Off = 0.25 });
        Assert.Null(window.Add(Row(0f)).Event);

        Assert.Null(window.Add(Row(1f), last: true).Event);
    }

    [Fact]
    public void Add_LastResultWhileOff_RaisesNothing()
    {
        var window = new SlidingWindow(new WindowOptions { Output = "p", Size = 2, On = 0.5, Off = 0.25 });

        Assert.Null(window.Add(Row(0f), last: true).Event);
    }

    [Fact]
    public void Add_NoOnThreshold_NoEvents()
    {
        var window = new SlidingWindow(new WindowOptions { Output = "p", Size = 2 });

        Assert.All(new[] { 0f, 100f, -100f, 0f }, v => Assert.Null(window.Add(Row(v)).Event));
    }

    [Fact]
    public void Add_RowOfSeveralElements_ItsMeanOrTheChosenElement()
    {
        var mean = new SlidingWindow(new WindowOptions { Output = "p", Size = 4 });
        var second = new SlidingWindow(new WindowOptions { Output = "p", Size = 4, Element = 1 });
        var row = Outputs(new NamedTensor("p", Tensors.Floats([1, 3], 1, 4, 10)));

        Assert.Equal(5, mean.Add(row).Mean);
        Assert.Equal(4, second.Add(row).Mean);
    }

    [Fact]
    public void Add_ValueMissingOrNotFinite_WindowUnchangedButIndexCounts()
    {
        var window = new SlidingWindow(new WindowOptions { Output = "p", Size = 3, Element = 0 });
        window.Add(Row(2));

        var nan = window.Add(Row(float.NaN));
        var other = window.Add(Outputs(new NamedTensor("q", Tensors.Floats([1, 1], 7))));
        var empty = window.Add(Outputs(new NamedTensor("p", Tensors.Floats([1, 0]))));
        var next = window.Add(Row(4));

        Assert.Equal([(1, 1, 2.0), (2, 1, 2.0), (3, 1, 2.0)], new[] { nan, other, empty }.Select(w => (w.Index, w.Count, w.Mean)));
        Assert.Equal((4, 2, 3.0, 4.0), (next.Index, next.Count, next.Mean, next.Max));
    }

    [Fact]
    public void Add_NothingTakenYet_EmptyWindow()
    {
        var window = new SlidingWindow(new WindowOptions { Output = "p", Size = 3, On = 0, Off = 0 });

        var first = window.Add(Row(float.PositiveInfinity));

        Assert.Equal((0, 0, 0.0, 0.0, (string?)null), (first.Index, first.Count, first.Mean, first.Max, first.Event));
    }

    [Fact]
    public void Add_IntegerAndHalfOutputs_ReadAsNumbers()
    {
        var window = new SlidingWindow(new WindowOptions { Output = "p", Size = 2 });
        var int64 = new Tensor(TensorElementType.Int64, [1], BitConverter.GetBytes(-3L), default);
        var half = new Tensor(TensorElementType.Float16, [1], BitConverter.GetBytes((Half)1.5f), default);

        window.Add(Outputs(new NamedTensor("p", int64)));
        var result = window.Add(Outputs(new NamedTensor("p", half)));

        Assert.Equal((-0.75, 1.5), (result.Mean, result.Max));
    }

    private static ImmutableArray<NamedTensor> Row(float value) => Outputs(new NamedTensor("p", Tensors.Floats([1, 1], value)));

    private static ImmutableArray<NamedTensor> Outputs(params NamedTensor[] outputs) => [new NamedTensor("other", Tensors.Floats([1], 9)), .. outputs];
}
