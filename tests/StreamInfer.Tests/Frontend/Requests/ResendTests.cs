using StreamInfer.Frontend.Requests;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Frontend.Requests;

public sealed class ResendTests
{
    private TaskCompletionSource _loss = NewLoss();
    private readonly List<TaskCompletionSource<string>> _tries = [];

    [Fact]
    public async Task CallAsync_AnsweredWithoutLoss_FirstAnswerAndNoResend()
    {
        var call = Call();
        _tries[0].SetResult("first");
        Assert.Equal("first", await call);
        Assert.Single(_tries);
    }

    [Fact]
    public async Task CallAsync_LossBeforeAnswer_ResentAndTheFirstAnswerOfEitherWins()
    {
        var call = Call();
        Lose();
        await Until(() => _tries.Count == 2);
        _tries[0].SetResult("first, late");
        Assert.Equal("first, late", await call);
    }

    [Fact]
    public async Task CallAsync_OlderTryFails_WaitsForTheNewest()
    {
        var call = Call();
        Lose();
        await Until(() => _tries.Count == 2);
        _tries[0].SetException(new TimeoutException("lost with its gateway"));
        Assert.False(call.IsCompleted);
        _tries[1].SetResult("resent");
        Assert.Equal("resent", await call);
    }

    [Fact]
    public async Task CallAsync_NewestTryFails_TheCallFailsWithIt()
    {
        var call = Call();
        Lose();
        await Until(() => _tries.Count == 2);
        _tries[1].SetException(new InvalidOperationException("unreachable now"));
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => call);
        Assert.Equal("unreachable now", error.Message);
    }

    [Fact]
    public async Task CallAsync_LossAfterLoss_ResentAtMostMaxResendsTimes()
    {
        var call = Call();
        for (var i = 0; i < Resend.MaxResends + 2; i++)
        {
            Lose();
            await Until(() => _tries.Count >= Math.Min(i + 2, Resend.MaxResends + 1));
        }

        Assert.Equal(Resend.MaxResends + 1, _tries.Count);
        _tries[^1].SetResult("last");
        Assert.Equal("last", await call);
    }

    private Task<string> Call() => Resend.CallAsync(() => _loss.Task, Try);

    private Task<string> Try()
    {
        var attempt = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_tries)
        {
            _tries.Add(attempt);
        }

        return attempt.Task;
    }

    private void Lose() => Interlocked.Exchange(ref _loss, NewLoss()).SetResult();

    private static TaskCompletionSource NewLoss() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private static Task Until(Func<bool> condition) => Eventually.UntilAsync(() => Task.FromResult(condition()), done => done, what: "a try sent");
}
