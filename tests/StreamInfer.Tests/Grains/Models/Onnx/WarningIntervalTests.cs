using Microsoft.Extensions.Time.Testing;
using StreamInfer.Grains.Models.Onnx;

namespace StreamInfer.Tests.Grains.Models.Onnx;

/// <summary>A warning clients can raise at their rate passes once per interval, with the count of those held back.</summary>
public sealed class WarningIntervalTests
{
    [Fact]
    public void TryPass_ManyWithinTheInterval_OnePassesThenTheNextCarriesTheCountHeldBack()
    {
        var time = new FakeTimeProvider();
        var warnings = new WarningInterval(TimeSpan.FromSeconds(10), time);

        Assert.True(warnings.TryPass(out var first));
        Assert.Equal(0, first);
        for (var i = 0; i < 5; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            Assert.False(warnings.TryPass(out _));
        }

        time.Advance(TimeSpan.FromSeconds(5));
        Assert.True(warnings.TryPass(out var heldBack));
        Assert.Equal(5, heldBack);
        Assert.False(warnings.TryPass(out _));
    }
}
