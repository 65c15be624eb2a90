namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// Spaces out a warning that clients can raise at their own rate: at most one per interval passes, and it carries how
/// many were held back since the one before. Thread-safe.
/// </summary>
internal sealed class WarningInterval(TimeSpan interval, TimeProvider time)
{
    private readonly object _lock = new();
    private long _lastLogged;
    private bool _logged;
    private int _heldBack;

    /// <summary>
    /// True when this occurrence is to be logged, with <paramref name="heldBack"/> the occurrences not logged since the
    /// last one that was; false (and counted) within the interval.
    /// </summary>
    public bool TryPass(out int heldBack)
    {
        var now = time.GetTimestamp();
        lock (_lock)
        {
            if (_logged && time.GetElapsedTime(_lastLogged, now) < interval)
            {
                _heldBack++;
                heldBack = 0;
                return false;
            }

            _logged = true;
            _lastLogged = now;
            heldBack = _heldBack;
            _heldBack = 0;
            return true;
        }
    }
}
