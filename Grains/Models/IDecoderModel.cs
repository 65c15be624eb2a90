using StreamInfer.Grains.Models.Decoding;

namespace StreamInfer.Grains.Models;

/// <summary>
/// A model that generates text a token at a time, served by continuous batching: sequences join and leave the running
/// set between steps. <see cref="Prepare"/> and <see cref="ReservedBytes"/> are thread-safe and run at admission;
/// <see cref="Step"/> runs only on the device's worker thread.
/// </summary>
public interface IDecoderModel : IInferenceModel
{
    /// <summary>The most prompt tokens prefilled in one step, across the sequences joining.</summary>
    int MaxPrefillTokens { get; }

    /// <summary>The key/value cache budget of one device, in bytes: the running set's reservations stay within it.</summary>
    long KvCacheBytes { get; }

    /// <summary>Checks a request and tokenizes its prompt into a new sequence, or says what is wrong with it.</summary>
    (DecodeSequence? Sequence, InferError? Error) Prepare(InferRequest request);

    /// <summary>Bytes of cache a sequence reserves for its whole life (prompt and every token it may generate).</summary>
    long ReservedBytes(DecodeSequence sequence);

    /// <summary>Runs one step: a prefill chunk of each sequence in <paramref name="prefill"/>, one token of each in
    /// <paramref name="decode"/>. Device thread only.</summary>
    List<StepOutcome> Step(IReadOnlyList<(DecodeSequence Sequence, int Tokens)> prefill, IReadOnlyList<DecodeSequence> decode);
}
