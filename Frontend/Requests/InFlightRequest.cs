using System.Text;

namespace StreamInfer.Frontend.Requests;

/// <summary>Names a request in the grid: its client's session and its per-admission id there.</summary>
internal readonly record struct RequestKey(string Session, string Request);

/// <summary>
/// One request between its admission and its end, whatever API it came by. It ends exactly once: whoever calls
/// <see cref="TryEnd"/> first (the delivery, a refusal, a cancel, the watchdog, a silo's loss) has its outcome handed to
/// the <see cref="IRequestListener"/>; every later end and token is dropped. A token at an index already handed on is a
/// retried delivery's duplicate (D9) and is dropped too. Tokens of a request that does not stream are gathered into the
/// text of its end.
/// </summary>
internal sealed class InFlightRequest(RequestTable table, RequestKey key, string id, bool isText, bool streams, long submittedAt, long watchdogAt, IRequestListener listener)
{
    private readonly Lock _gate = new();
    private long _watchdogAt = watchdogAt;
    private string? _silo;
    private int _cancelling;
    private int _nextIndex;
    private bool _ended;
    private StringBuilder? _text;

    public RequestKey Key { get; } = key;

    /// <summary>The id its client knows it by.</summary>
    public string Id { get; } = id;

    /// <summary>The per-admission id in the grid.</summary>
    public string GridId => Key.Request;

    /// <summary>A text (prompt) request: it ends with a generation's end.</summary>
    public bool IsText { get; } = isText;

    /// <summary>Whether tokens go to the listener as they come; otherwise they are gathered for the end.</summary>
    public bool Streams { get; } = streams;

    /// <summary>When it was submitted (<see cref="TimeProvider.GetTimestamp"/>).</summary>
    public long SubmittedAt { get; } = submittedAt;

    /// <summary>When the watchdog ends it; set once more when the admission names the deadline applied.</summary>
    public long WatchdogAt
    {
        get => Volatile.Read(ref _watchdogAt);
        set => Volatile.Write(ref _watchdogAt, value);
    }

    /// <summary>The silo whose batcher holds it once admitted; null while its admission is in flight.</summary>
    public string? Silo
    {
        get => Volatile.Read(ref _silo);
        set => Volatile.Write(ref _silo, value);
    }

    /// <summary>The client's id of the stateful sequence it belongs to, or null.</summary>
    public string? Sequence { get; set; }

    /// <summary>Tokens handed on so far (read under the request's lock, as in <see cref="IRequestListener.OnEnd"/>).</summary>
    public int Tokens { get; private set; }

    /// <summary>Whether the request has ended.</summary>
    public bool IsEnded
    {
        get
        {
            lock (_gate)
            {
                return _ended;
            }
        }
    }

    /// <summary>Whether a cancel was asked for.</summary>
    public bool IsCancelling => Volatile.Read(ref _cancelling) == 1;

    /// <summary>Marks the request as being cancelled; false if it already was.</summary>
    public bool TryMarkCancelling() => Interlocked.Exchange(ref _cancelling, 1) == 0;

    /// <summary>The text of the tokens gathered so far (empty when it streams); read under the request's lock, as in
    /// <see cref="IRequestListener.OnEnd"/>.</summary>
    public string GatheredText => _text?.ToString() ?? string.Empty;

    /// <summary>Hands on a token unless the request has ended or the token's index was handed on already.</summary>
    public bool TryToken(GeneratedToken token, DateTimeOffset producedAt)
    {
        lock (_gate)
        {
            if (_ended || token.Index < _nextIndex)
            {
                return false;
            }

            _nextIndex = token.Index + 1;
            Tokens++;
            if (Streams)
            {
                listener.OnToken(this, token, producedAt);
            }
            else
            {
                (_text ??= new StringBuilder()).Append(token.Text);
            }

            return true;
        }
    }

    /// <summary>Warns of a filling backlog, unless the request has ended.</summary>
    public void Warn(BacklogWarning warning)
    {
        lock (_gate)
        {
            if (!_ended)
            {
                listener.OnWarning(this, warning);
            }
        }
    }

    /// <summary>Ends the request with <paramref name="outcome"/> if nothing ended it before; false if something had.</summary>
    public bool TryEnd(RequestOutcome outcome, DateTimeOffset producedAt = default)
    {
        lock (_gate)
        {
            if (_ended)
            {
                return false;
            }

            _ended = true;
            if (_text is not null && outcome.Done is { } done)
            {
                // A request that does not stream ends with its whole text.
                outcome = outcome with { Done = done with { Text = _text.Append(done.Text).ToString() } };
            }

            try
            {
                listener.OnEnd(this, outcome, producedAt);
            }
            finally
            {
                // Only after the listener wrote the end: a drain counting requests never sees one between the two.
                table.Remove(this);
            }

            return true;
        }
    }
}
