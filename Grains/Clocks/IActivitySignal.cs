namespace StreamInfer.Grains.Clocks;

/// <summary>Told when work enters the grid, so that timers which idle while nothing happens can wake at once.</summary>
public interface IActivitySignal
{
    void NotifyActivity();
}

/// <summary>The signal when nothing listens for it.</summary>
public sealed class NoActivitySignal : IActivitySignal
{
    public void NotifyActivity()
    {
    }
}
