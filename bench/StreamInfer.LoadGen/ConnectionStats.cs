namespace StreamInfer.LoadGen;

/// <summary>
/// What one connection saw. Written by that connection alone (a WebSocket's or stream's receive loop; an HTTP or gRPC
/// client's slots under the client's lock; the fields marked Interlocked by anyone) and read only after the run has
/// ended.
/// </summary>
internal sealed class ConnectionStats(int latencyCapacity)
{
    /// <summary>Latencies in ms of the requests sent inside the measured window.</summary>
    public List<double> Latencies { get; } = new(latencyCapacity);

    /// <summary>For each of <see cref="Latencies"/>, when its request was sent: seconds into the measured window.</summary>
    public List<float> SentAtSeconds { get; } = new(latencyCapacity);

    /// <summary>For each of <see cref="Latencies"/>, whether its answer was a result (not an error).</summary>
    public List<bool> IsResult { get; } = new(latencyCapacity);

    /// <summary>Terminal frames for requests sent inside the measured window: <c>result</c>, or the error's code.</summary>
    public Dictionary<string, long> Outcomes { get; } = new(StringComparer.Ordinal);

    /// <summary><c>warning</c> frames by code, over the whole run.</summary>
    public Dictionary<string, long> Warnings { get; } = new(StringComparer.Ordinal);

    /// <summary><c>error</c> frames with no id, by code, over the whole run.</summary>
    public Dictionary<string, long> ConnectionErrors { get; } = new(StringComparer.Ordinal);

    /// <summary>Terminal frames whose id was never sent or was already answered.</summary>
    public long UnknownOrDuplicate { get; set; }

    /// <summary>Frames that are not JSON objects (or binary frames whose header length is past the frame), or have an unexpected <c>type</c>.</summary>
    public long UnexpectedFrames { get; set; }

    /// <summary>Terminal frames for known ids over the whole run, warm-up included.</summary>
    public long Answered { get; set; }

    /// <summary>Answers that came after their slot had stopped waiting (see <see cref="Overdue"/>).</summary>
    public long LateAnswers { get; set; }

    /// <summary>Requests whose slot stopped waiting for the answer and moved on (Interlocked).</summary>
    public long Overdue;

    /// <summary>Requests in flight when the server closed or broke the connection during the run (Interlocked).</summary>
    public long LostOnDrop;

    /// <summary>Requests still in flight when the grace period after the run ended (Interlocked).</summary>
    public long Abandoned;

    /// <summary>Answers checked against the sent bytes, over the whole run.</summary>
    public long Verified { get; private set; }

    /// <summary>Checked answers that did not return the sent bytes, over the whole run.</summary>
    public long Mismatches { get; private set; }

    /// <summary>Why the connection ended before the run did, if it did.</summary>
    public string? DropReason { get; set; }

    /// <summary>Measured <c>result</c> frames that carried a <c>timing</c> with a batch size.</summary>
    public long TimedResults { get; private set; }

    /// <summary>The sum of 1 / batch_size over <see cref="TimedResults"/>: the number of batches they came in.</summary>
    public double Batches { get; private set; }

    /// <summary>The sum of queue_ms over <see cref="TimedResults"/>.</summary>
    public double QueueMsSum { get; private set; }

    /// <summary>The sum of compute_ms / batch_size over <see cref="TimedResults"/>: each batch's compute time once.</summary>
    public double BatchComputeMsSum { get; private set; }

    /// <summary>Records a measured result's <c>timing</c>.</summary>
    public void AddTiming(int batchSize, double queueMs, double computeMs)
    {
        TimedResults++;
        Batches += 1.0 / batchSize;
        QueueMsSum += queueMs;
        BatchComputeMsSum += computeMs / batchSize;
    }

    /// <summary>
    /// Records an answer: counted, and when its request was sent inside the measured window
    /// [<paramref name="measureStart"/>, <paramref name="measureEnd"/>), its latency, outcome and (for a result) the
    /// server's timing. Times are <see cref="System.Diagnostics.Stopwatch"/> timestamps.
    /// </summary>
    public void Record(long sentAt, long now, long measureStart, long measureEnd, string outcome, FrameTiming timing)
    {
        Answered++;
        if (sentAt < measureStart || sentAt >= measureEnd)
        {
            return;
        }

        Latencies.Add((now - sentAt) * 1000.0 / System.Diagnostics.Stopwatch.Frequency);
        SentAtSeconds.Add((float)((sentAt - measureStart) / (double)System.Diagnostics.Stopwatch.Frequency));
        IsResult.Add(outcome == "result");
        Increment(Outcomes, outcome);
        if (outcome == "result" && timing.BatchSize >= 1)
        {
            AddTiming(timing.BatchSize, timing.QueueMs, timing.ComputeMs);
        }
    }

    /// <summary>Counts requests that will never be answered: abandoned when the run closed the connection, else lost on a drop.</summary>
    public void AddLost(int lost, bool closing)
    {
        if (closing)
        {
            Interlocked.Add(ref Abandoned, lost);
        }
        else
        {
            Interlocked.Add(ref LostOnDrop, lost);
        }
    }

    /// <summary>Counts a checked answer; returns <paramref name="match"/>.</summary>
    public bool Verify(bool match)
    {
        Verified++;
        if (!match)
        {
            Mismatches++;
        }

        return match;
    }

    public static void Increment(Dictionary<string, long> counts, string key)
        => counts[key] = counts.GetValueOrDefault(key) + 1;
}
