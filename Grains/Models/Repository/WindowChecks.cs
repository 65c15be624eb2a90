using StreamInfer.Grains.Options;

namespace StreamInfer.Grains.Models.Repository;

/// <summary>
/// The <c>sequence.window</c> section's own checks (its output is checked against the model when it loads) and the
/// options it comes to.
/// </summary>
internal static class WindowChecks
{
    /// <summary>The most values a window holds.</summary>
    public const int MaxSize = 4096;

    /// <summary>The window's options, or null when a field is wrong (each problem goes to <paramref name="error"/>).</summary>
    public static WindowOptions? Read(WindowConfig window, Action<string?, string> error)
    {
        var ok = true;
        void Fail(string field, string reason)
        {
            error($"sequence.window.{field}", reason);
            ok = false;
        }

        if (string.IsNullOrEmpty(window.Output))
        {
            Fail("output", "is missing: name the output the window is kept over.");
        }

        if (window.Size is not { } size)
        {
            Fail("size", "is missing: how many of a sequence's last results the window holds.");
        }
        else if (size is < 1 or > MaxSize)
        {
            Fail("size", $"must be in [1, {MaxSize}]; got {size}.");
        }

        if (window.Element is < 0)
        {
            Fail("element", $"must be at least 0; got {window.Element}.");
        }

        if (window.On is { } on && !double.IsFinite(on))
        {
            Fail("on", $"must be a finite number; got {on}.");
        }

        if (window.Off is { } off)
        {
            if (!double.IsFinite(off))
            {
                Fail("off", $"must be a finite number; got {off}.");
            }
            else if (window.On is null)
            {
                Fail("off", "needs \"on\": events turn on at \"on\" and off below \"off\".");
            }
            else if (off > window.On)
            {
                Fail("off", $"must be at most \"on\" ({window.On}); got {off}.");
            }
        }

        return ok
            ? new WindowOptions { Output = window.Output!, Size = window.Size!.Value, Element = window.Element, On = window.On, Off = window.Off ?? window.On ?? 0 }
            : null;
    }
}
