namespace StreamInfer.Grains.Deliveries;

/// <summary>How a <see cref="DeliveryOutbox"/> retries a refused delivery, and how long it then gives a frontend up.</summary>
/// <param name="First">The wait before the first retry; each further wait doubles, up to <paramref name="Max"/>.</param>
/// <param name="Max">The longest wait between attempts.</param>
/// <param name="Budget">How long after the first attempt a delivery is still retried.</param>
/// <param name="MinAttempts">Attempts made whatever the budget says (one attempt may wait out a whole call timeout).</param>
/// <param name="UnreachableFor">After a delivery failed every attempt, deliveries to its frontend are dropped at once for
/// this long.</param>
internal sealed record DeliveryRetry(TimeSpan First, TimeSpan Max, TimeSpan Budget, int MinAttempts, TimeSpan UnreachableFor)
{
    /// <summary>
    /// Retries after 0.1, 0.2, 0.4, 0.8 s, then every second, for 10 s in all: a silo's death takes some seconds to be
    /// declared, and a frontend whose gateway died reconnects through another meanwhile. A frontend still unreachable
    /// then is taken for gone (its clients with it) for 30 s.
    /// </summary>
    public static DeliveryRetry Default { get; } = new(
        TimeSpan.FromMilliseconds(100),
        TimeSpan.FromSeconds(1),
        TimeSpan.FromSeconds(10),
        4,
        TimeSpan.FromSeconds(30));
}
