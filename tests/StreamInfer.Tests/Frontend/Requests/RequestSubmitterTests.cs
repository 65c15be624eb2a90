using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Protocol;
using StreamInfer.Frontend.Requests;
using StreamInfer.Frontend.Routing;
using StreamInfer.Grains.Options;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Requests;

public sealed class RequestSubmitterTests
{
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(5);

    private readonly FakeTimeProvider _time = new();
    private readonly RequestTable _table = new();
    private readonly RecordingListener _listener = new();
    private readonly GatewayLoss _gatewayLoss = new(NullLogger<GatewayLoss>.Instance);
    private readonly FakeSession _session;
    private readonly RequestSubmitter _submitter;

    public RequestSubmitterTests()
    {
        (var grains, _session) = FakeGrainFactory.Create();
        _submitter = new RequestSubmitter(
            grains,
            _table,
            new FrontendIdentity(),
            _gatewayLoss,
            Options.Create(new FrontendOptions { WatchdogGrace = Grace }),
            Options.Create(new ClientSessionOptions { DefaultTimeout = TimeSpan.FromSeconds(30), MaxTimeout = TimeSpan.FromMinutes(5) }),
            _time,
            NullLogger<RequestSubmitter>.Instance);
    }

    [Fact]
    public async Task ExpireOverdue_DeadlinePlusGracePassesWithoutAnswer_DeadlineExceededAndReleasedAtSession()
    {
        var request = Begin(TimeSpan.FromSeconds(1));
        var submitted = _submitter.SubmitAsync(request, Infer(TimeSpan.FromSeconds(1)));
        Admit(new Admission(null, null, TimeSpan.FromSeconds(1), "silo-a"));
        Assert.True(await submitted);

        _time.Advance(TimeSpan.FromSeconds(1) + Grace - TimeSpan.FromMilliseconds(1));
        _submitter.ExpireOverdue();
        Assert.Empty(_listener.Ends);

        _time.Advance(TimeSpan.FromMilliseconds(1));
        _submitter.ExpireOverdue();

        Assert.Equal(ErrorCode.DeadlineExceeded, Assert.Single(_listener.Ends).Error!.Code);
        Assert.Equal(request.GridId, Assert.Single(_session.Cancelled));
    }

    [Fact]
    public void Begin_TimeoutPastMax_WatchdogClampedToMaxPlusGrace()
    {
        var request = Begin(TimeSpan.FromHours(1));

        _time.Advance(TimeSpan.FromMinutes(5) + Grace);
        _submitter.ExpireOverdue();

        Assert.True(request.IsEnded);
    }

    [Fact]
    public async Task FailSilo_RequestsHeldThereAndNotYetAdmitted_EndModelUnavailableOthersStay()
    {
        var onLost = Begin(null);
        var onOther = Begin(null);
        var unadmitted = Begin(null);
        var first = _submitter.SubmitAsync(onLost, Infer(null));
        var second = _submitter.SubmitAsync(onOther, Infer(null));
        Admit(new Admission(null, null, TimeSpan.FromSeconds(30), "silo-a"));
        Admit(new Admission(null, null, TimeSpan.FromSeconds(30), "silo-b"));
        await Task.WhenAll(first, second);

        var failed = _submitter.FailSilo("silo-a");

        Assert.Equal(2, failed);
        Assert.True(onLost.IsEnded);
        Assert.True(unadmitted.IsEnded);
        Assert.False(onOther.IsEnded);
        Assert.All(_listener.Ends, e => Assert.Equal(ErrorCode.ModelUnavailable, e.Error!.Code));
        Assert.Equal(1, _table.Count);
    }

    [Fact]
    public async Task FailHeldBy_GatewayGoneBeforeTheDeclaration_OnlyRequestsHeldThereEnd()
    {
        var onLost = Begin(null);
        var onOther = Begin(null);
        var unadmitted = Begin(null);
        var first = _submitter.SubmitAsync(onLost, Infer(null));
        var second = _submitter.SubmitAsync(onOther, Infer(null));
        Admit(new Admission(null, null, TimeSpan.FromSeconds(30), "silo-a"));
        Admit(new Admission(null, null, TimeSpan.FromSeconds(30), "silo-b"));
        await Task.WhenAll(first, second);

        var failed = _submitter.FailHeldBy("silo-a");

        Assert.Equal(1, failed);
        Assert.True(onLost.IsEnded);
        Assert.False(unadmitted.IsEnded);
        Assert.False(onOther.IsEnded);
        var end = Assert.Single(_listener.Ends);
        Assert.Equal(ErrorCode.ModelUnavailable, end.Error!.Code);
        Assert.NotNull(end.Error.RetryAfterMs);
        await Eventually.UntilAsync(() => Task.FromResult(_session.Cancelled.Contains(onLost.GridId)), released => released, what: "the request released at its session");
    }

    [Fact]
    public async Task CancelAsync_BeforeAdmissionAnswers_EndsCancelledAndCancelsAgainOnceAdmitted()
    {
        var request = Begin(null);
        var submitted = _submitter.SubmitAsync(request, Infer(null));

        await _submitter.CancelAsync(request, RequestOutcome.CancelledByClient);
        Assert.True(Assert.Single(_listener.Ends).Cancelled);
        Assert.Single(_session.Cancelled);

        Admit(new Admission(null, null, TimeSpan.FromSeconds(30), "silo-a"));
        Assert.True(await submitted);

        await Eventually.UntilAsync(() => Task.FromResult(_session.Cancelled.Count), n => n == 2, what: "the admitted request is cancelled again");
        Assert.Single(_listener.Ends);
    }

    [Fact]
    public async Task CancelAsync_Repeated_OneCancelOneEnd()
    {
        var request = Begin(null);

        await _submitter.CancelAsync(request, RequestOutcome.CancelledByClient);
        await _submitter.CancelAsync(request, RequestOutcome.CancelledByClient);

        Assert.Single(_session.Cancelled);
        Assert.Single(_listener.Ends);
    }

    [Fact]
    public async Task SubmitAsync_Refused_WarningThenRefusalEnds()
    {
        var request = Begin(null);
        var submitted = _submitter.SubmitAsync(request, Infer(null));

        Admit(new Admission(new InferError(ErrorCode.BacklogFull, "full"), new BacklogWarning(8, 10)));

        Assert.False(await submitted);
        Assert.Single(_listener.Warnings);
        Assert.Equal(ErrorCode.BacklogFull, Assert.Single(_listener.Ends).Error!.Code);
        Assert.Empty(_session.Cancelled);
    }

    [Fact]
    public async Task SubmitAsync_CallFails_EndsWithAdmissionFailureAndReleases()
    {
        var request = Begin(null);
        var submitted = _submitter.SubmitAsync(request, Infer(null));

        Assert.True(_session.Admissions.TryDequeue(out var admission));
        admission.SetException(new SiloUnavailableException("gone"));

        Assert.False(await submitted);
        Assert.Equal(ErrorCode.ModelUnavailable, Assert.Single(_listener.Ends).Error!.Code);
        await Eventually.UntilAsync(() => Task.FromResult(_session.Cancelled.Count), n => n == 1, what: "the failed admission is released");
    }

    [Fact]
    public async Task SubmitAsync_GatewayConnectionClosesBeforeTheAnswer_SentAgainAndTheSecondAnswerAdmits()
    {
        var request = Begin(TimeSpan.FromSeconds(1));
        var submitted = _submitter.SubmitAsync(request, Infer(TimeSpan.FromSeconds(1)));
        Assert.True(_session.Admissions.TryDequeue(out var lost));

        _gatewayLoss.Signal();
        var resent = await Dequeue();
        Assert.Equal([request.GridId, request.GridId], _session.Submitted);
        resent.SetResult(new Admission(null, null, TimeSpan.FromSeconds(1), "silo-b"));

        Assert.True(await submitted);
        Assert.Equal("silo-b", request.Silo);
        Assert.False(request.IsEnded);

        // The first try's failure, coming late (the client's response timeout), changes nothing.
        lost.SetException(new TimeoutException());
        Assert.False(request.IsEnded);
    }

    [Fact]
    public async Task SubmitAsync_AnsweredBeforeAnyGatewayCloses_NotSentAgain()
    {
        var request = Begin(TimeSpan.FromSeconds(1));
        var submitted = _submitter.SubmitAsync(request, Infer(TimeSpan.FromSeconds(1)));
        Admit(new Admission(null, null, TimeSpan.FromSeconds(1), "silo-a"));
        Assert.True(await submitted);

        _gatewayLoss.Signal();
        Assert.Single(_session.Submitted);
        Assert.Empty(_session.Admissions);
    }

    private async Task<TaskCompletionSource<Admission>> Dequeue()
    {
        await Eventually.UntilAsync(() => Task.FromResult(_session.Submitted.Count), n => n > 1, what: "the request sent again");
        Assert.True(_session.Admissions.TryDequeue(out var admission));
        return admission;
    }

    private InFlightRequest Begin(TimeSpan? timeout)
        => _submitter.Begin("session", Guid.NewGuid().ToString("N"), "id", Infer(timeout), streams: true, _listener);

    private static ClientFrame.Infer Infer(TimeSpan? timeout) => new("id", "echo", [], null, timeout);

    private void Admit(Admission admission)
    {
        Assert.True(_session.Admissions.TryDequeue(out var pending));
        pending.SetResult(admission);
    }
}
