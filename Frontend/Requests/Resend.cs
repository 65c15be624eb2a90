namespace StreamInfer.Frontend.Requests;

/// <summary>
/// A call that is sent again when the connection it may have gone out on closes before its answer, and answered by
/// whichever try answers first. The newest try speaks for the call: its failure is the call's failure (it went by the
/// routes that are up now), while an older try's failure only drops that try.
/// </summary>
internal static class Resend
{
    /// <summary>Tries after the first, at most: a gateway connection closing again and again means the cluster is going.</summary>
    public const int MaxResends = 2;

    /// <summary>
    /// Sends with <paramref name="send"/>, and again each time <paramref name="loss"/> (read anew before each try)
    /// completes while no try has answered. The call must be idempotent.
    /// </summary>
    public static async Task<T> CallAsync<T>(Func<Task> loss, Func<Task<T>> send)
    {
        var lost = loss();
        var first = send();
        if (first.IsCompleted)
        {
            return await first;
        }

        var tries = new List<Task<T>>(1 + MaxResends) { first };
        var newest = first;
        var resends = 0;
        while (true)
        {
            var done = resends < MaxResends ? await Task.WhenAny([.. tries, lost]) : await Task.WhenAny(tries);
            if (done == lost)
            {
                resends++;
                lost = loss();
                try
                {
                    newest = send();
                }
                catch
                {
                    LeaveBehind(tries, null);
                    throw;
                }

                tries.Add(newest);
                continue;
            }

            var answered = (Task<T>)done;
            if (answered.IsCompletedSuccessfully || answered == newest)
            {
                LeaveBehind(tries, answered);
                return await answered;
            }

            tries.Remove(answered);
            _ = answered.Exception;
        }
    }

    /// <summary>Tries nobody waits for any more may still fail (at the client's response timeout): their failure is observed.</summary>
    private static void LeaveBehind<T>(List<Task<T>> tries, Task<T>? answered)
    {
        foreach (var other in tries.Where(t => t != answered))
        {
            _ = other.ContinueWith(static t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously);
        }
    }
}
