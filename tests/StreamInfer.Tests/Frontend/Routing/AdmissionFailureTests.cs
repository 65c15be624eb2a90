using StreamInfer.Frontend.Routing;

namespace StreamInfer.Tests.Frontend.Routing;

public sealed class AdmissionFailureTests
{
    [Fact]
    public void From_SiloUnreachable_ModelUnavailableWithRetryHint()
    {
        var error = AdmissionFailure.From(new SiloUnavailableException("the silo is gone"));

        Assert.Equal(ErrorCode.ModelUnavailable, error.Code);
        Assert.Equal(1000, error.RetryAfterMs);
    }

    [Fact]
    public void From_OtherFailure_Internal()
    {
        var error = AdmissionFailure.From(new InvalidOperationException("a bug"));

        Assert.Equal(ErrorCode.Internal, error.Code);
        Assert.Null(error.RetryAfterMs);
    }
}
