namespace StreamInfer.Tests.Infrastructure;

/// <summary>Awaits a condition on state the test cannot subscribe to, with a deadline (never a fixed sleep).</summary>
public static class Eventually
{
    public static async Task<T> UntilAsync<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan? timeout = null, string? what = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(15));
        while (true)
        {
            var value = await probe();
            if (done(value))
            {
                return value;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"condition not met before the deadline: {what ?? "(unnamed)"}; last value {value}.");
            }

            await Task.Yield();
            await Task.Delay(5);
        }
    }
}
