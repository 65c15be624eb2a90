namespace StreamInfer.Grains.Models.Decoding;

/// <summary>What one step did for one sequence: the token it generated (if any) and, when the sequence ended, why.</summary>
/// <param name="Sequence">The sequence.</param>
/// <param name="Token">The token generated this step; null during a prefill chunk that is not the prompt's last, and
/// for the end-of-text token.</param>
/// <param name="FinishReason">One of <see cref="FinishReasons"/> when the sequence ended this step.</param>
/// <param name="FinalText">Text held back until the end and released with it (see <see cref="GenerationDone.Text"/>).</param>
public readonly record struct StepOutcome(DecodeSequence Sequence, GeneratedToken? Token, string? FinishReason, string FinalText);
