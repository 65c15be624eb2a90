using System.Threading.Channels;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Models.Decoding;

namespace StreamInfer.Grains.Batching;

/// <summary>
/// The device side of a decoder batcher's continuous batching: the running set as the device sees it, stepped back to
/// back on the device thread. Each step is one job on the <see cref="DeviceWorker"/>; at its end the device plans and
/// queues the next step itself (behind whatever other models queued meanwhile) and hands the finished step's outcome
/// to the grain through <see cref="NextAsync"/>. The grain's work between steps (delivering tokens, admitting, expiring)
/// thus runs beside the next step instead of before it: with the grain planning every step, the device would wait for
/// a trip through the grain scheduler each time.
/// <para>
/// The grain and the device share only what crosses <see cref="_gate"/> (joiners, counts) and the flags of each
/// <see cref="DecodeRunning"/> (a cancel or deadline the grain decided): the device drops a flagged sequence at its
/// next plan and reports it, and only then may the grain touch its sequence (text held back, cache). The device drops
/// sequences past their deadline itself, so a deadline costs at most the step in flight however far behind the grain
/// is. Sequences that finish leave the device's set in the step that finished them. The device runs ahead of the grain
/// by at most <see cref="MaxAhead"/> unread steps; then it waits for <see cref="Resume"/>.
/// </para>
/// </summary>
internal sealed class DecodeLoop(DeviceWorker device, TimeProvider time)
{
    /// <summary>Steps the device may have finished and the grain not yet read; at that many the loop pauses (the grain
    /// is behind) until <see cref="Resume"/>.</summary>
    private const int MaxAhead = 2;

    private readonly Lock _gate = new();
    private readonly List<DecodeRunning> _inbox = [];
    private readonly Channel<DecodeStepResult> _results = Channel.CreateUnbounded<DecodeStepResult>(new UnboundedChannelOptions { SingleReader = true });

    // Device thread only.
    private readonly List<DecodeRunning> _running = [];

    // Under _gate.
    private bool _active;
    private bool _stopped;
    private int _deviceCount;
    private int _unread;

    /// <summary>The most prompt tokens prefilled in one step (the serving version's <c>max_prefill_tokens</c>).</summary>
    public int PrefillBudget { get; set; } = 256;

    /// <summary>Hands a sequence that joined the running set to the device: it is prefilled from the next step on.</summary>
    public void Join(DecodeRunning running)
    {
        lock (_gate)
        {
            _inbox.Add(running);
            StartIfIdle();
        }
    }

    /// <summary>Restarts stepping after the grain caught up with a loop paused by <see cref="MaxAhead"/>.</summary>
    public void Resume()
    {
        lock (_gate)
        {
            StartIfIdle();
        }
    }

    /// <summary>Stops for good: the next step drops every sequence without running it and reports nothing (the grain
    /// has ended them itself; their caches are not let go, since a step may have been using them).</summary>
    public void Stop()
    {
        lock (_gate)
        {
            _stopped = true;
        }

        _results.Writer.TryComplete();
    }

    /// <summary>The next finished step, in step order; null once the loop is stopped.</summary>
    public async ValueTask<DecodeStepResult?> NextAsync()
    {
        while (await _results.Reader.WaitToReadAsync())
        {
            if (_results.Reader.TryRead(out var result))
            {
                lock (_gate)
                {
                    _unread--;
                }

                return result;
            }
        }

        return null;
    }

    private void StartIfIdle()
    {
        if (_active || _stopped || _unread >= MaxAhead || (_deviceCount == 0 && _inbox.Count == 0))
        {
            return;
        }

        _active = true;
        // After a pause for the grain the set ran on: the step's period is still measured from the previous one.
        Post(first: _deviceCount == 0);
    }

    private void Post(bool first) => device.Post(() => Step(first), Refused);

    /// <summary>The device worker has stopped (its silo is shutting down): everything on it ends as failed.</summary>
    private void Refused()
    {
        // No step runs now or later, so the device's list is free to read here.
        List<DecodeRunning> all;
        lock (_gate)
        {
            all = [.. _running, .. _inbox];
            _running.Clear();
            _inbox.Clear();
            _stopped = true;
            _active = false;
            _deviceCount = 0;
            _unread++;
        }

        _results.Writer.TryWrite(new DecodeStepResult(true, [], all, [], new InvalidOperationException("the device worker has stopped."), all, 0, 0, time.GetUtcNow()));
    }

    /// <summary>One step on the device thread: takes joiners, drops what the grain flagged and what passed its
    /// deadline, runs, reports, chains. Never throws.</summary>
    private void Step(bool first)
    {
        bool stopped;
        lock (_gate)
        {
            _running.AddRange(_inbox);
            _inbox.Clear();
            stopped = _stopped;
        }

        DecodeStepResult? result = null;
        var dropped = new List<DecodeRunning>();
        if (stopped)
        {
            _running.Clear();
        }
        else
        {
            try
            {
                result = Run(first, dropped);
            }
            catch (Exception ex)
            {
                // A bug in planning must not stall the loop with its streams: everything on the device ends.
                List<DecodeRunning> all = [.. _running];
                result = new DecodeStepResult(first, dropped, all, [], ex, all, 0, 0, time.GetUtcNow());
                _running.Clear();
            }
        }

        bool chain;
        lock (_gate)
        {
            if (result is not null)
            {
                _unread++;
            }

            _deviceCount = _running.Count;
            chain = !_stopped && (_deviceCount > 0 || _inbox.Count > 0) && _unread < MaxAhead;
            _active = chain;
        }

        if (result is not null)
        {
            _results.Writer.TryWrite(result);
        }

        if (chain)
        {
            Post(first: false);
        }
    }

    private DecodeStepResult? Run(bool first, List<DecodeRunning> dropped)
    {
        var now = time.GetUtcNow();
        _running.RemoveAll(r =>
        {
            if (r.Leaving || r.Deadline <= now)
            {
                dropped.Add(r);
                return true;
            }

            return false;
        });

        if (_running.Count == 0)
        {
            return dropped.Count == 0 ? null : new DecodeStepResult(first, dropped, [], [], null, [], 0, 0, time.GetUtcNow());
        }

        // Prefill chunks in arrival order up to the step's budget, so a long prompt costs other streams at most one
        // chunk's time per step; every decoding sequence advances by one token. Sequences run on the version they
        // started with: during a rollout a step runs each version's part.
        var budget = PrefillBudget;
        var plan = new Dictionary<IDecoderModel, (List<(DecodeSequence, int)> Prefill, List<DecodeSequence> Decode)>();
        var stepping = new List<DecodeRunning>(_running.Count);
        foreach (var r in _running)
        {
            var seq = r.Sequence;
            if (!plan.TryGetValue(r.Model, out var part))
            {
                part = ([], []);
                plan[r.Model] = part;
            }

            if (seq.Decoding)
            {
                part.Decode.Add(seq);
                stepping.Add(r);
            }
            else if (budget > 0)
            {
                var chunk = Math.Min(budget, seq.Prompt.Length - seq.Prefilled);
                budget -= chunk;
                part.Prefill.Add((seq, chunk));
                stepping.Add(r);
            }
        }

        var ranAt = time.GetTimestamp();
        var outcomes = new List<(DecodeRunning, StepOutcome)>(stepping.Count);
        Exception? failure = null;
        var failed = new List<DecodeRunning>();
        var bySequence = stepping.ToDictionary(r => r.Sequence);
        foreach (var (version, part) in plan)
        {
            try
            {
                foreach (var outcome in version.Step(part.Prefill, part.Decode))
                {
                    outcomes.Add((bySequence[outcome.Sequence], outcome));
                }
            }
            catch (Exception ex)
            {
                // That version's sequences of the step end (their caches may be half written); during a rollout the
                // other version's part stands, and everything else goes on.
                failure ??= ex;
                failed.AddRange(stepping.Where(r => r.Model == version));
            }
        }

        if (failed.Count > 0)
        {
            _running.RemoveAll(failed.Contains);
        }

        var endedAt = time.GetTimestamp();
        var producedAt = time.GetUtcNow();
        foreach (var (r, outcome) in outcomes)
        {
            if (outcome.FinishReason is not null)
            {
                _running.Remove(r);
            }
        }

        return new DecodeStepResult(first, dropped, stepping, outcomes, failure, failed, ranAt, endedAt, producedAt);
    }
}

/// <summary>
/// A sequence in a decoder batcher's running set, shared by the grain and the device loop: the device owns
/// <see cref="Sequence"/> from <see cref="DecodeLoop.Join"/> until it reports the sequence gone (finished, dropped or
/// failed); the grain sets <see cref="Leaving"/> to have it dropped.
/// </summary>
internal class DecodeRunning(DecodeSequence sequence, IDecoderModel model, DateTimeOffset deadline)
{
    private volatile bool _leaving;

    public DecodeSequence Sequence { get; } = sequence;

    /// <summary>The version the sequence runs on.</summary>
    public IDecoderModel Model { get; } = model;

    /// <summary>Past it, the device drops the sequence at its next plan (the request's deadline).</summary>
    public DateTimeOffset Deadline { get; } = deadline;

    /// <summary>Set by the grain when the client cancels: the device drops the sequence at its next plan.</summary>
    public bool Leaving
    {
        get => _leaving;
        set => _leaving = value;
    }
}

/// <summary>What one device step did, for the grain.</summary>
/// <param name="First">The step started a run of steps (the device had been idle), so it has no previous step to time from.</param>
/// <param name="Dropped">Sequences that left before this step without running: flagged <see cref="DecodeRunning.Leaving"/>
/// (cancelled), or past their <see cref="DecodeRunning.Deadline"/>.</param>
/// <param name="Stepping">The sequences the step ran.</param>
/// <param name="Outcomes">Each stepped sequence's outcome (a prefill chunk that is not its prompt's last has none).</param>
/// <param name="Failure">Why (part of) the step failed.</param>
/// <param name="Failed">The stepped sequences that failed with it (those of the version whose part threw, or all of them)
/// and left the device's set; the other versions' outcomes stand.</param>
/// <param name="RanAt">When the step started on the device (<see cref="TimeProvider.GetTimestamp"/>; 0 when nothing ran).</param>
/// <param name="EndedAt">When it ended (<see cref="TimeProvider.GetTimestamp"/>).</param>
/// <param name="ProducedAt">When it ended, wall clock, for the return path's latency.</param>
internal sealed record DecodeStepResult(
    bool First,
    List<DecodeRunning> Dropped,
    List<DecodeRunning> Stepping,
    List<(DecodeRunning Running, StepOutcome Outcome)> Outcomes,
    Exception? Failure,
    List<DecodeRunning> Failed,
    long RanAt,
    long EndedAt,
    DateTimeOffset ProducedAt);
