using Microsoft.Extensions.Configuration;
using StreamInfer.Frontend.Operations;

namespace StreamInfer.Tests.Frontend.Operations;

/// <summary>The start-up check: beyond loopback, a frontend needs an admin key or the explicit override.</summary>
public sealed class OpenAdminGuardTests
{
    [Theory]
    [InlineData("http://127.0.0.1:8000")]
    [InlineData("http://localhost:8000;http://[::1]:8001")]
    public void Check_LoopbackOnlyWithoutAKey_Starts(string urls)
        => Assert.Empty(OpenAdminGuard.Check(Configuration(("Urls", urls))));

    [Theory]
    [InlineData("Urls", "http://0.0.0.0:8000")]
    [InlineData("Urls", "http://127.0.0.1:8000;http://*:8001")]
    [InlineData("Urls", "http://frontend.internal:8000")]
    [InlineData("HTTP_PORTS", "8080")]
    [InlineData("Kestrel:Endpoints:Main:Url", "http://10.0.0.5:8000")]
    public void Check_BeyondLoopbackWithoutAKey_RefusesNamingTheSettings(string key, string value)
    {
        var refusal = Assert.Throws<InvalidOperationException>(() => OpenAdminGuard.Check(Configuration((key, value))));

        Assert.Contains("StreamInfer:Frontend:AdminKey", refusal.Message, StringComparison.Ordinal);
        Assert.Contains("StreamInfer:Frontend:AllowOpenAdmin", refusal.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Check_BeyondLoopbackWithAKey_Starts()
        => Assert.Empty(OpenAdminGuard.Check(Configuration(("Urls", "http://0.0.0.0:8000"), ("StreamInfer:Frontend:AdminKey", "0123456789abcdef"))));

    [Fact]
    public void Check_BeyondLoopbackWithTheOverride_StartsAndReportsTheOpenAddresses()
    {
        var open = OpenAdminGuard.Check(Configuration(("Urls", "http://127.0.0.1:8000;http://0.0.0.0:8001"), ("StreamInfer:Frontend:AllowOpenAdmin", "true")));

        Assert.Equal(["http://0.0.0.0:8001"], open);
    }

    private static IConfiguration Configuration(params (string Key, string Value)[] settings)
        => new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value))).Build();
}
