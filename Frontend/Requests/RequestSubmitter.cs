using System.Collections.Immutable;
using System.Text;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Auth;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Routing;
using StreamInfer.Grains.Options;

namespace StreamInfer.Frontend.Requests;

/// <summary>
/// Takes every request, whatever API it came by, through its client's session grain: registers it in the
/// <see cref="RequestTable"/> with its watchdog time, admits it, cancels it, and releases at the session what the
/// watchdog or a silo's loss ended here.
/// </summary>
internal sealed partial class RequestSubmitter(
    IGrainFactory grains,
    RequestTable table,
    FrontendIdentity identity,
    GatewayLoss gatewayLoss,
    IOptions<FrontendOptions> options,
    IOptions<ClientSessionOptions> sessionOptions,
    TimeProvider time,
    ILogger<RequestSubmitter> logger)
{
    /// <summary>
    /// Registers a request of session <paramref name="sessionId"/>, known to its client as <paramref name="id"/> and in
    /// the grid as <paramref name="gridId"/> (unique within the session). Until the admission says which deadline
    /// applied (the model's default may differ from the session's), the watchdog allows the longest there is.
    /// </summary>
    public InFlightRequest Begin(string sessionId, string gridId, string id, ClientFrame.Infer infer, bool streams, IRequestListener listener)
    {
        var now = time.GetTimestamp();
        var request = table.Add(new RequestKey(sessionId, gridId), id, infer.Prompt is not null, streams, now, WatchdogAt(now, infer.Timeout ?? sessionOptions.Value.MaxTimeout), listener);
        request.Sequence = infer.Sequence?.Id;
        return request;
    }

    /// <summary>
    /// Admits a request of <paramref name="client"/> through its session, with the client's limits; a model the client
    /// may not use is refused here. A refusal or a failed call ends it. True when admitted.
    /// </summary>
    public async Task<bool> SubmitAsync(InFlightRequest request, ClientFrame.Infer infer, ClientIdentity? client = null)
    {
        if (request.IsEnded)
        {
            // Ended while waiting to be sent (the watchdog, a silo's death): nothing may be admitted that no one reads.
            return false;
        }

        if (client?.Refuse(infer.Model) is { } forbidden)
        {
            request.TryEnd(RequestOutcome.Failed(forbidden));
            return false;
        }

        if (PromptTooLarge(infer.Prompt, options.Value.MaxPromptBytes) is { } tooLarge)
        {
            // Refused here, before the grid tokenizes any of it; nothing of it reached the grid.
            request.TryEnd(RequestOutcome.Failed(tooLarge) with { FromGrid = true });
            return false;
        }

        try
        {
            var session = Session(request);
            var message = new InferRequest(request.GridId, infer.Model, infer.Inputs, infer.Prompt, infer.Timeout, identity.Id, infer.Priority, infer.Generation, identity.Observer, infer.Sequence, client?.Limits);
            var admission = await Resend.CallAsync(() => gatewayLoss.Next, () => session.SubmitAsync(message));
            request.WatchdogAt = WatchdogAt(request.SubmittedAt, admission.Timeout ?? infer.Timeout ?? sessionOptions.Value.DefaultTimeout);
            request.Silo = admission.Silo;
            if (admission.Warning is { } warning)
            {
                request.Warn(warning);
            }

            if (admission.Error is { } error)
            {
                if (error.Code == ErrorCode.UnknownModel && client is { Models: not null })
                {
                    // The session names every served model; this client learns only of those it may use.
                    error = client.UnknownModel(infer.Model);
                }

                // Refused: the grid answered and holds nothing of the request, unless the batcher could not be reached.
                request.TryEnd(RequestOutcome.Failed(error) with { FromGrid = !admission.MayBeHeld });
                return false;
            }

            if (request.IsCancelling)
            {
                // The client's cancel may have reached the session before this submit did (both are sent without
                // waiting), found nothing to cancel, and ended the request here: cancel again now that it is admitted.
                _ = ReleaseAsync(request);
            }

            return true;
        }
        catch (Exception ex)
        {
            LogSubmitFailed(logger, ex, request.Key.Session, request.Id);
            if (request.TryEnd(RequestOutcome.Failed(AdmissionFailure.From(ex))))
            {
                // The session may have admitted it before the failure reached us: release it there too.
                _ = ReleaseAsync(request);
            }

            return false;
        }
    }

    /// <summary>The client cancels: the request is cancelled at its session, then ends with <paramref name="outcome"/>
    /// unless its answer came first. Repeated cancels of one request cost nothing.</summary>
    public async Task CancelAsync(InFlightRequest request, RequestOutcome outcome)
    {
        if (request.TryMarkCancelling())
        {
            await ReleaseAsync(request);
            request.TryEnd(outcome);
        }
    }

    /// <summary>The caller is gone: the request ends without an answer and is cancelled at its session.</summary>
    public void Abandon(InFlightRequest request)
    {
        request.TryMarkCancelling();
        if (request.TryEnd(RequestOutcome.Gone))
        {
            _ = ReleaseAsync(request);
        }
    }

    /// <summary>A client's connection ended: its session cancels whatever of it is still in the grid.</summary>
    public async Task CloseSessionAsync(string sessionId)
    {
        try
        {
            await grains.GetGrain<IClientSessionGrain>(sessionId).CloseAsync();
        }
        catch (Exception ex)
        {
            LogCloseFailed(logger, ex, sessionId);
        }
    }

    /// <summary>A stream that carried these sequences closed before they ended: its session frees them.</summary>
    public async Task EndSequencesAsync(string sessionId, ImmutableArray<string> sequenceIds)
    {
        try
        {
            await grains.GetGrain<IClientSessionGrain>(sessionId).EndSequencesAsync(sequenceIds);
        }
        catch (Exception ex)
        {
            // Their state expires at the model's idle timeout all the same.
            LogEndSequencesFailed(logger, ex, sessionId);
        }
    }

    /// <summary>Ends, with <c>deadline_exceeded</c>, requests whose answer is overdue past the watchdog grace.</summary>
    public void ExpireOverdue()
    {
        var now = time.GetTimestamp();
        foreach (var request in table.All)
        {
            if (request.WatchdogAt <= now
                && request.TryEnd(RequestOutcome.Failed(new InferError(ErrorCode.DeadlineExceeded, "no answer arrived within the request's deadline."))))
            {
                _ = ReleaseAsync(request);
            }
        }
    }

    /// <summary>
    /// A silo was declared dead: every request its batchers held ends now with <c>model_unavailable</c> (the client may
    /// retry at once: new requests go to the silos left), and so does every one whose admission has not answered: a
    /// call in flight through the dead silo's gateway is never answered, and which gateway a call took is not known here.
    /// A stateful sequence's request held there ends with <c>unknown_sequence</c> instead: its state died with the silo.
    /// </summary>
    public int FailSilo(string silo) => Fail(silo, admissionsToo: true);

    private int Fail(string silo, bool admissionsToo)
    {
        var outcome = RequestOutcome.Failed(new InferError(ErrorCode.ModelUnavailable, $"silo '{silo}', which was running this request, left the cluster; retry.", AdmissionFailure.SiloLostRetryMs));
        var lost = RequestOutcome.Failed(new InferError(ErrorCode.UnknownSequence, $"silo '{silo}', which held this request's sequence, left the cluster; start the sequence again."));
        var failed = 0;
        foreach (var request in table.All)
        {
            if ((request.Silo == silo || (admissionsToo && request.Silo is null)) && request.TryEnd(request.Silo is not null && request.Sequence is not null ? lost : outcome))
            {
                _ = ReleaseAsync(request);
                failed++;
            }
        }

        return failed;
    }

    /// <summary>
    /// A silo's process is gone (its gateway refuses connections) though membership has not declared it dead yet: the
    /// requests its batchers held end now with <c>model_unavailable</c>, as <see cref="FailSilo"/> would end them.
    /// Admissions not answered are left alone: those that went through its gateway are sent again (see
    /// <see cref="Resend"/>), and the rest are answered.
    /// </summary>
    public int FailHeldBy(string silo) => Fail(silo, admissionsToo: false);

    /// <summary>The refusal of a prompt over <paramref name="max"/> UTF-8 bytes, or null.</summary>
    private static InferError? PromptTooLarge(string? prompt, int max)
    {
        // A UTF-16 char is at most three UTF-8 bytes: most prompts need no count.
        if (prompt is null || prompt.Length <= max / 3)
        {
            return null;
        }

        var bytes = Encoding.UTF8.GetByteCount(prompt);
        return bytes <= max ? null : new InferError(ErrorCode.PayloadTooLarge, $"the prompt is {bytes} bytes (UTF-8); this frontend takes at most {max} (Frontend:MaxPromptBytes).");
    }

    private long WatchdogAt(long from, TimeSpan timeout)
    {
        var max = sessionOptions.Value.MaxTimeout;
        timeout = timeout < max ? timeout : max;
        return from + (long)((timeout + options.Value.WatchdogGrace).TotalSeconds * time.TimestampFrequency);
    }

    private IClientSessionGrain Session(InFlightRequest request) => grains.GetGrain<IClientSessionGrain>(request.Key.Session);

    private async Task ReleaseAsync(InFlightRequest request)
    {
        try
        {
            await Session(request).CancelAsync(request.GridId);
        }
        catch (Exception ex)
        {
            LogCancelFailed(logger, ex, request.Key.Session, request.GridId);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Ending the sequences of client {ClientId} failed")]
    private static partial void LogEndSequencesFailed(ILogger logger, Exception ex, string clientId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Closing the session of client {ClientId} failed")]
    private static partial void LogCloseFailed(ILogger logger, Exception ex, string clientId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId}: submitting request {RequestId} failed")]
    private static partial void LogSubmitFailed(ILogger logger, Exception ex, string clientId, string requestId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Client {ClientId}: cancelling request {RequestId} failed")]
    private static partial void LogCancelFailed(ILogger logger, Exception ex, string clientId, string requestId);
}
