using StreamInfer.Frontend.Auth;
using StreamInfer.Grains.Options;

namespace StreamInfer.Tests.Frontend.Auth;

/// <summary>The <c>StreamInfer:Auth</c> checks (every error at once) and the key commands.</summary>
public sealed class AuthOptionsTests
{
    private static readonly string HashA = ApiKeyRing.Hash("key-a");
    private static readonly string HashB = ApiKeyRing.Hash("key-b");

    [Fact]
    public void Validate_DefaultsAndAGoodKey_Succeed()
    {
        var options = new AuthOptions
        {
            Keys = [new ApiKeyOptions { Hash = HashA, Identity = "web-app.1", RatePerSecond = 5, Burst = 10, BacklogCapacity = 8, MaxPriority = 2, Models = ["echo"], MaxConnections = 3 }],
            TrustedProxies = ["10.0.0.7", "10.0.0.0/8", "::1"],
            MaxPriority = 0,
        };

        Assert.True(new AuthOptionsValidator().Validate(null, new AuthOptions()).Succeeded);
        Assert.True(new AuthOptionsValidator().Validate(null, options).Succeeded);
    }

    [Fact]
    public void Validate_EveryFieldWrong_AllReportedAtOnce()
    {
        var options = new AuthOptions
        {
            Keys =
            [
                new ApiKeyOptions { Hash = "the-key-itself", Identity = "has space", RatePerSecond = 0, Burst = 0.5, BacklogCapacity = 0, MaxPriority = 16, MaxConnections = 0, Models = [""] },
                new ApiKeyOptions { Hash = HashB, Identity = "twice", RatePerSecond = 1 },
                new ApiKeyOptions { Hash = HashB.ToUpperInvariant(), Identity = "twice", RatePerSecond = 2 },
            ],
            TrustedProxies = ["proxy.example"],
            MaxPriority = -1,
        };

        var failures = new AuthOptionsValidator().Validate(null, options).Failures!.ToList();

        foreach (var expected in new[] { "Keys:0:Hash", "Keys:0:Identity", "Keys:2:Hash is the hash of an earlier key", "Keys:2 names identity 'twice'", "proxy.example", "Auth:MaxPriority" })
        {
            Assert.Contains(failures, f => f.Contains(expected, StringComparison.Ordinal));
        }

        // The first key's identity is invalid, so its limits are not checked further; the others' are.
        Assert.Equal(6, failures.Count);
    }

    [Fact]
    public void Validate_LimitsOutOfRange_EachNamed()
    {
        var options = new AuthOptions { Keys = [new ApiKeyOptions { Hash = HashA, Identity = "a", RatePerSecond = 2e6, Burst = 0, BacklogCapacity = 100_001, MaxPriority = 16, MaxConnections = 0, Models = [" "] }] };

        var failures = new AuthOptionsValidator().Validate(null, options).Failures!.ToList();

        Assert.Equal(6, failures.Count);
        foreach (var field in new[] { "RatePerSecond", "Burst", "BacklogCapacity", "MaxPriority", "MaxConnections", "Models" })
        {
            Assert.Contains(failures, f => f.StartsWith($"StreamInfer:Auth:Keys:0:{field}", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Validate_KeyLimitsAndSessionDefaultsPastTheSameBounds_SameRangesAndWords()
    {
        var key = new AuthOptions { Keys = [new ApiKeyOptions { Hash = HashA, Identity = "a", RatePerSecond = 2e6, Burst = 0, BacklogCapacity = 100_001 }] };
        var session = new ClientSessionOptions { RatePerSecond = 2e6, Burst = 0, BacklogCapacity = 100_001 };

        var fromKey = new AuthOptionsValidator().Validate(null, key).Failures!.Select(f => f.Replace("StreamInfer:Auth:Keys:0:", string.Empty, StringComparison.Ordinal));
        var fromSession = new ClientSessionOptionsValidator().Validate(null, session).Failures!.Select(f => f.Replace("StreamInfer:Session:", string.Empty, StringComparison.Ordinal));

        Assert.Equal(
            ["RatePerSecond must be in (0, 1000000]; got 2000000.", "Burst must be in [1, 1000000]; got 0.", "BacklogCapacity must be in [1, 100000]; got 100001."],
            fromKey);
        Assert.Equal(fromKey, fromSession);
    }

    [Fact]
    public void Hash_IsSha256HexOfTheUtf8Key()
        => Assert.Equal("2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", ApiKeyRing.Hash("foo"));

    [Fact]
    public void HashKeyCommand_KeyOnStandardInput_PrintsItsHash()
    {
        using var output = new StringWriter();

        Assert.True(ApiKeyCommand.TryRun(["--hash-key"], new StringReader("foo\n"), output));

        Assert.Equal(ApiKeyRing.Hash("foo"), output.ToString().Trim());
    }

    [Fact]
    public void NewKeyCommand_PrintsAKeyAndItsHash()
    {
        using var output = new StringWriter();

        Assert.True(ApiKeyCommand.TryRun(["--new-key"], TextReader.Null, output));

        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var key = lines[0]["key:".Length..].Trim();
        Assert.Equal(43, key.Length);
        Assert.Matches("^[A-Za-z0-9_-]+$", key);
        Assert.Equal(ApiKeyRing.Hash(key), lines[1]["hash:".Length..].Trim());
        Assert.False(ApiKeyCommand.TryRun(["--urls", "http://127.0.0.1:0"], TextReader.Null, output));
    }
}
