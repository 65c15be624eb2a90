using StreamInfer.Frontend.Requests;

namespace StreamInfer.Tests.Frontend.Requests;

/// <summary>Records what the lifecycle hands to a transport.</summary>
internal sealed class RecordingListener : IRequestListener
{
    public List<GeneratedToken> Tokens { get; } = [];

    public List<RequestOutcome> Ends { get; } = [];

    public List<BacklogWarning> Warnings { get; } = [];

    public void OnWarning(InFlightRequest request, BacklogWarning warning) => Warnings.Add(warning);

    public void OnToken(InFlightRequest request, GeneratedToken token, DateTimeOffset producedAt) => Tokens.Add(token);

    public void OnEnd(InFlightRequest request, RequestOutcome outcome, DateTimeOffset producedAt) => Ends.Add(outcome);
}
