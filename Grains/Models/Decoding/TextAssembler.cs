using System.Text;

namespace StreamInfer.Grains.Models.Decoding;

/// <summary>What one generated token added to the text: <see cref="Text"/> to send now (possibly empty), and
/// <see cref="Stopped"/> once a stop sequence has appeared, in which case <see cref="Text"/> ends right before it.</summary>
public readonly record struct TextDelta(string Text, bool Stopped);

/// <summary>
/// Turns one sequence's generated token ids into text deltas that are safe to send as they come: a character split
/// across tokens goes out only when complete (invalid bytes become U+FFFD), and text that might be the start of a stop
/// sequence is held until it is known not to be one, so a stop sequence and what follows it are never sent. Not
/// thread-safe: one instance per sequence, used from one thread.
/// </summary>
public sealed class TextAssembler
{
    private readonly IDecoderTokenizer _tokenizer;
    private readonly string[] _stops;
    private readonly int _longestStop;
    private readonly Decoder _decoder = TokenText.Lenient.GetDecoder();
    private readonly StringBuilder _emitted = new();
    private char[] _pending;
    private int _pendingLength;
    private bool _done;

    /// <param name="tokenizer">The tokenizer of the model that generates the ids.</param>
    /// <param name="stop">Stop sequences (empty strings are ignored); none when null.</param>
    public TextAssembler(IDecoderTokenizer tokenizer, IReadOnlyList<string>? stop = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        var stops = new List<string>();
        foreach (var s in stop ?? [])
        {
            if (!string.IsNullOrEmpty(s))
            {
                stops.Add(s);
                _longestStop = Math.Max(_longestStop, s.Length);
            }
        }
        _stops = [.. stops];
        _pending = new char[Math.Max(64, 2 * _longestStop)];
    }

    /// <summary>All text sent so far: the concatenation of the deltas returned.</summary>
    public string Text => _emitted.ToString();

    /// <summary>Whether a stop sequence has appeared; later tokens add nothing.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds a generated token and returns the text that can be sent because of it.</summary>
    public TextDelta Append(int tokenId)
    {
        if (_done)
        {
            return new TextDelta(string.Empty, Stopped);
        }
        var bytes = _tokenizer.TokenBytes(tokenId);
        if (bytes.IsEmpty)
        {
            return new TextDelta(string.Empty, false);
        }
        Decode(bytes, flush: false);
        return Release(final: false);
    }

    /// <summary>Ends the sequence (length, end of text, cancel) and returns all that was held back: an unfinished
    /// character becomes U+FFFD, and a stop sequence that completes only now still cuts the text.</summary>
    public TextDelta Finish()
    {
        if (_done)
        {
            return new TextDelta(string.Empty, Stopped);
        }
        Decode([], flush: true);
        var delta = Release(final: true);
        _done = true;
        return delta;
    }

    private void Decode(ReadOnlySpan<byte> bytes, bool flush)
    {
        var room = _decoder.GetCharCount(bytes, flush);
        if (_pendingLength + room > _pending.Length)
        {
            Array.Resize(ref _pending, Math.Max(_pending.Length * 2, _pendingLength + room));
        }
        _pendingLength += _decoder.GetChars(bytes, _pending.AsSpan(_pendingLength), flush);
    }

    private TextDelta Release(bool final)
    {
        var pending = _pending.AsSpan(0, _pendingLength);
        // Any stop sequence starts inside the pending text: everything sent earlier was no stop sequence's start.
        var stopAt = -1;
        foreach (var stop in _stops)
        {
            var at = pending.IndexOf(stop.AsSpan(), StringComparison.Ordinal);
            if (at >= 0 && (stopAt < 0 || at < stopAt))
            {
                stopAt = at;
            }
        }
        if (stopAt >= 0)
        {
            Stopped = true;
            _done = true;
            var text = Emit(stopAt);
            _pendingLength = 0;
            return new TextDelta(text, true);
        }

        var send = final ? pending.Length : pending.Length - HeldBack(pending);
        var sent = Emit(send);
        pending[send..].CopyTo(_pending);
        _pendingLength -= send;
        return new TextDelta(sent, false);
    }

    /// <summary>The length of the longest tail of <paramref name="pending"/> that begins some stop sequence.</summary>
    private int HeldBack(ReadOnlySpan<char> pending)
    {
        var held = 0;
        foreach (var stop in _stops)
        {
            for (var length = Math.Min(stop.Length - 1, pending.Length); length > held; length--)
            {
                if (pending[^length..].SequenceEqual(stop.AsSpan(0, length)))
                {
                    held = length;
                    break;
                }
            }
        }
        return held;
    }

    private string Emit(int length)
    {
        if (length == 0)
        {
            return string.Empty;
        }
        var text = new string(_pending, 0, length);
        _emitted.Append(text);
        return text;
    }
}
