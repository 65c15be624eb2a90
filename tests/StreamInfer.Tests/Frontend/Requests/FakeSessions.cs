using System.Collections.Concurrent;
using System.Reflection;

namespace StreamInfer.Tests.Frontend.Requests;

/// <summary>A session grain without a cluster: admissions wait on <see cref="Admissions"/>; cancels are recorded.</summary>
internal sealed class FakeSession : IClientSessionGrain
{
    public ConcurrentQueue<TaskCompletionSource<Admission>> Admissions { get; } = new();

    public ConcurrentQueue<string> Cancelled { get; } = new();

    /// <summary>The ids submitted, in order (a request sent again appears twice).</summary>
    public ConcurrentQueue<string> Submitted { get; } = new();

    public Task<Admission> SubmitAsync(InferRequest request)
    {
        Submitted.Enqueue(request.RequestId);
        var admission = new TaskCompletionSource<Admission>(TaskCreationOptions.RunContinuationsAsynchronously);
        Admissions.Enqueue(admission);
        return admission.Task;
    }

    public Task<InferError?> CancelAsync(string requestId)
    {
        Cancelled.Enqueue(requestId);
        return Task.FromResult<InferError?>(null);
    }

    public Task CloseAsync() => Task.CompletedTask;

    public Task EndSequencesAsync(System.Collections.Immutable.ImmutableArray<string> sequenceIds) => Task.CompletedTask;

    public Task CompletedAsync(System.Collections.Immutable.ImmutableArray<string> requestIds) => Task.CompletedTask;

    public Task<SessionStatus> GetStatusAsync() => throw new NotSupportedException();
}

/// <summary>A grain factory whose every session grain is one <see cref="FakeSession"/>.</summary>
internal class FakeGrainFactory : DispatchProxy
{
    public FakeSession Session { get; private set; } = new();

    public static (IGrainFactory Factory, FakeSession Session) Create()
    {
        var factory = DispatchProxy.Create<IGrainFactory, FakeGrainFactory>();
        return (factory, ((FakeGrainFactory)(object)factory).Session);
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        => targetMethod?.ReturnType == typeof(IClientSessionGrain) ? Session : throw new NotSupportedException(targetMethod?.Name);
}
