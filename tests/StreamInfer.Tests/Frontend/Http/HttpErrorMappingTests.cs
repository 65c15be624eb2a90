using System.Text.Json;
using Microsoft.AspNetCore.Http;
using StreamInfer.Frontend.Http;

namespace StreamInfer.Tests.Frontend.Http;

public sealed class HttpErrorMappingTests
{
    [Theory]
    [InlineData(ErrorCode.BadRequest, 400)]
    [InlineData(ErrorCode.InvalidInput, 400)]
    [InlineData(ErrorCode.Unauthorized, 401)]
    [InlineData(ErrorCode.UnknownModel, 404)]
    [InlineData(ErrorCode.PayloadTooLarge, 413)]
    [InlineData(ErrorCode.RateLimited, 429)]
    [InlineData(ErrorCode.BacklogFull, 429)]
    [InlineData(ErrorCode.Overloaded, 503)]
    [InlineData(ErrorCode.ModelUnavailable, 503)]
    [InlineData(ErrorCode.DeadlineExceeded, 504)]
    [InlineData(ErrorCode.Internal, 500)]
    public void ToHttpStatus_EachCode_StatusOfDesign(ErrorCode code, int status)
        => Assert.Equal(status, code.ToHttpStatus());

    [Fact]
    public async Task WriteError_RateLimited_RetryAfterInWholeSecondsRoundedUpAndStructuredBody()
    {
        var context = new DefaultHttpContext();
        using var body = new MemoryStream();
        context.Response.Body = body;

        await HttpErrors.Protocol(new InferError(ErrorCode.RateLimited, "slow down", 1500), "r9").ExecuteAsync(context);

        Assert.Equal(429, context.Response.StatusCode);
        Assert.Equal("2", context.Response.Headers.RetryAfter.ToString());
        using var json = JsonDocument.Parse(body.ToArray());
        Assert.Equal("r9", json.RootElement.GetProperty("id").GetString());
        var error = json.RootElement.GetProperty("error");
        Assert.Equal("rate_limited", error.GetProperty("code").GetString());
        Assert.Equal(1500, error.GetProperty("retry_after_ms").GetInt32());
    }
}
