namespace StreamInfer.Frontend.Hosting;

/// <summary>
/// Host filtering (ASP.NET Core's, setting <c>AllowedHosts</c>): a request whose <c>Host</c> is not listed is refused
/// with 400 before any endpoint, so a page on a domain rebound to the frontend's address cannot reach it from a browser.
/// Unset, the frontend takes the loopback names, which is all the embedded default answers to; a deployment lists the
/// names clients use (<c>*</c> turns the filter off).
/// </summary>
internal static class AllowedHostsDefault
{
    /// <summary>The setting, as ASP.NET Core reads it.</summary>
    public const string Setting = "AllowedHosts";

    /// <summary>What an unset <see cref="Setting"/> means here.</summary>
    public const string Loopback = "localhost;127.0.0.1;[::1]";

    /// <summary>Sets <see cref="Setting"/> to <see cref="Loopback"/> when no configuration source sets it.</summary>
    public static void Apply(IConfigurationManager configuration)
    {
        if (string.IsNullOrWhiteSpace(configuration[Setting]))
        {
            configuration.AddInMemoryCollection(new Dictionary<string, string?> { [Setting] = Loopback });
        }
    }
}
