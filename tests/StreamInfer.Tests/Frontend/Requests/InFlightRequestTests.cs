using StreamInfer.Frontend.Requests;

namespace StreamInfer.Tests.Frontend.Requests;

public sealed class InFlightRequestTests
{
    private readonly RequestTable _table = new();
    private readonly RecordingListener _listener = new();

    [Fact]
    public void TryEnd_Twice_OnlyFirstOutcomeReachesListenerAndRequestLeavesTable()
    {
        var request = Add(streams: true);

        Assert.True(request.TryEnd(RequestOutcome.Failed(new InferError(ErrorCode.DeadlineExceeded, "late"))));
        Assert.False(request.TryEnd(RequestOutcome.CancelledByClient));

        var end = Assert.Single(_listener.Ends);
        Assert.Equal(ErrorCode.DeadlineExceeded, end.Error!.Code);
        Assert.Equal(0, _table.Count);
        Assert.True(request.IsEnded);
    }

    [Fact]
    public void TryToken_IndexAlreadyHandedOn_Dropped()
    {
        var request = Add(streams: true);

        Assert.True(request.TryToken(new GeneratedToken(0, 10, "a"), default));
        Assert.True(request.TryToken(new GeneratedToken(1, 11, "b"), default));
        Assert.False(request.TryToken(new GeneratedToken(1, 11, "b"), default));
        Assert.False(request.TryToken(new GeneratedToken(0, 10, "a"), default));

        Assert.Equal(["a", "b"], _listener.Tokens.Select(t => t.Text));
        Assert.Equal(2, request.Tokens);
    }

    [Fact]
    public void TryToken_AfterEnd_Dropped()
    {
        var request = Add(streams: true);
        request.TryEnd(RequestOutcome.CancelledByClient);

        Assert.False(request.TryToken(new GeneratedToken(0, 10, "late"), default));
        Assert.Empty(_listener.Tokens);
    }

    [Fact]
    public void TryEnd_NotStreamedGeneration_EndCarriesGatheredTextBeforeItsOwn()
    {
        var request = Add(streams: false);
        request.TryToken(new GeneratedToken(0, 1, "Hel"), default);
        request.TryToken(new GeneratedToken(1, 2, "lo"), default);
        request.TryToken(new GeneratedToken(1, 2, "lo"), default);

        request.TryEnd(RequestOutcome.From(new Delivery("s", "g", null, null, Done: Done(" world"))));

        Assert.Empty(_listener.Tokens);
        Assert.Equal("Hello world", Assert.Single(_listener.Ends).Done!.Text);
    }

    [Fact]
    public void Deliver_TokenAndEndOfRequestInFlight_HandedToItOnce()
    {
        var request = Add(streams: true);

        _table.Deliver(new Delivery("s", "g", null, null, new GeneratedToken(0, 1, "x"), Done("")), default);
        _table.Deliver(new Delivery("s", "g", null, null, new GeneratedToken(0, 1, "x"), Done("")), default);
        _table.Deliver(new Delivery("s", "other", null, new InferError(ErrorCode.Internal, "not ours")), default);

        Assert.Single(_listener.Tokens);
        Assert.Single(_listener.Ends);
        Assert.True(request.IsEnded);
    }

    [Fact]
    public void TryMarkCancelling_Twice_TrueOnlyFirst()
    {
        var request = Add(streams: true);

        Assert.True(request.TryMarkCancelling());
        Assert.False(request.TryMarkCancelling());
        Assert.True(request.IsCancelling);
    }

    private static GenerationDone Done(string text) => new("lm", "1", FinishReasons.Stop, 3, 2, text, 0, 0);

    private InFlightRequest Add(bool streams) => _table.Add(new RequestKey("s", "g"), "id", isText: true, streams, 0, long.MaxValue, _listener);
}
