using Microsoft.Extensions.Logging.Abstractions;
using StreamInfer.Frontend.Http;

namespace StreamInfer.Tests.Frontend.Http;

/// <summary>A failed call into the cluster answers a protocol code and a stable message, never the exception's text.</summary>
public sealed class GrainCallErrorsTests
{
    private const string Secret = "/srv/private/models/x/1/model.onnx at Orleans.Runtime.Something";

    [Fact]
    public void For_Timeout_DeadlineExceededWithoutTheExceptionText()
    {
        var error = GrainCallErrors.For(NullLogger.Instance, new TimeoutException(Secret), "the rollout");

        Assert.Equal(ErrorCode.DeadlineExceeded, error.Code);
        Assert.StartsWith("the rollout", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Secret, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void For_ClusterUnreachable_ModelUnavailableWithRetry()
    {
        var error = GrainCallErrors.For(NullLogger.Instance, new OrleansException(Secret), "listing the models");

        Assert.Equal(ErrorCode.ModelUnavailable, error.Code);
        Assert.Equal(1000, error.RetryAfterMs);
        Assert.DoesNotContain(Secret, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void For_AnythingElse_InternalWithoutTheExceptionText()
    {
        var error = GrainCallErrors.For(NullLogger.Instance, new InvalidOperationException(Secret), "looking up model 'x'");

        Assert.Equal(ErrorCode.Internal, error.Code);
        Assert.DoesNotContain(Secret, error.Message, StringComparison.Ordinal);
    }
}
