using System.Diagnostics;

namespace StreamInfer.LoadGen;

/// <summary>
/// Paces one slot at one send per interval (a paced run); with no interval it never waits. Slots start at a random
/// phase so that the whole run's sends spread evenly over each interval, and a slot that fell behind catches up by at
/// most one interval.
/// </summary>
internal sealed class SlotPacer(double intervalTicks)
{
    private long _nextSend = Stopwatch.GetTimestamp() + (long)(Random.Shared.NextDouble() * intervalTicks);

    /// <summary>Waits for this slot's next turn.</summary>
    public async ValueTask WaitTurnAsync()
    {
        if (intervalTicks <= 0)
        {
            return;
        }

        var wait = _nextSend - Stopwatch.GetTimestamp();
        if (wait > 0)
        {
            await Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency));
        }

        _nextSend = Math.Max(_nextSend + (long)intervalTicks, Stopwatch.GetTimestamp() - (long)intervalTicks);
    }
}
