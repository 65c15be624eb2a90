using System.Net;
using StreamInfer.Frontend.Hosting;

namespace StreamInfer.Frontend.Operations;

/// <summary>
/// A frontend that listens beyond loopback without <see cref="FrontendOptions.AdminKey"/> would leave its dashboard and
/// model operations open to the network: it refuses to start, unless <see cref="FrontendOptions.AllowOpenAdmin"/> says
/// that is meant, and then it warns at start.
/// </summary>
internal static partial class OpenAdminGuard
{
    private const string AdminKeySetting = $"{FrontendOptions.Section}:{nameof(FrontendOptions.AdminKey)}";
    private const string OverrideSetting = $"{FrontendOptions.Section}:{nameof(FrontendOptions.AllowOpenAdmin)}";

    /// <summary>
    /// The addresses the frontend would listen on that are not loopback, when no admin key is configured (empty when
    /// there is a key, or every address is loopback).
    /// </summary>
    public static IReadOnlyList<string> OpenAddresses(IConfiguration configuration)
    {
        if (!string.IsNullOrEmpty(configuration[AdminKeySetting]))
        {
            return [];
        }

        return [.. ListenUrls(configuration).Where(u => !IsLoopback(u))];
    }

    /// <summary>
    /// Throws when <see cref="OpenAddresses"/> has any and the override is off; returns them (for the start-up warning)
    /// when the override is on.
    /// </summary>
    public static IReadOnlyList<string> Check(IConfiguration configuration)
    {
        var open = OpenAddresses(configuration);
        if (open.Count > 0 && !configuration.GetValue(OverrideSetting, false))
        {
            throw new InvalidOperationException(
                $"The frontend listens on {string.Join(", ", open)}, beyond loopback, and {AdminKeySetting} is not set: the dashboard and the " +
                $"model operations would be open to the network. Set {AdminKeySetting} (16+ characters; environment variable " +
                $"StreamInfer__Frontend__AdminKey), listen on 127.0.0.1 only, or set {OverrideSetting}=true to run open on purpose.");
        }

        return open;
    }

    /// <summary>Logs the open addresses, loudly, once the app is built.</summary>
    public static void WarnIfOpen(WebApplication app, IReadOnlyList<string> open)
    {
        if (open.Count > 0)
        {
            LogOpen(app.Logger, string.Join(", ", open), OverrideSetting);
        }
    }

    /// <summary>Whether a listen URL (<c>http://127.0.0.1:8000</c>, <c>http://*:80</c>, <c>http://localhost:5000</c>) is on loopback only.</summary>
    internal static bool IsLoopback(string url)
    {
        var host = BindingAddress.Parse(url).Host;
        return host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
            || (IPAddress.TryParse(host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address));
    }

    /// <summary>Every URL Kestrel will listen on per configuration: <c>Urls</c> (with the gRPC one added), the HTTP(S) ports, its endpoints.</summary>
    private static IEnumerable<string> ListenUrls(IConfiguration configuration)
    {
        static string[] List(string? value) => value?.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];

        var endpoints = configuration.GetSection("Kestrel:Endpoints").GetChildren().Select(e => e["Url"]).OfType<string>().ToArray();
        if (endpoints.Length > 0)
        {
            // Kestrel's own endpoints replace Urls and the ports.
            return endpoints;
        }

        var urls = List(configuration[WebHostDefaults.ServerUrlsKey]);
        if (urls.Length > 0)
        {
            return urls;
        }

        // The ports variables bind every address.
        return [.. List(configuration[WebHostDefaults.HttpPortsKey]).Select(p => $"http://*:{p}"), .. List(configuration[WebHostDefaults.HttpsPortsKey]).Select(p => $"https://*:{p}")];
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "The frontend listens on {Addresses} WITHOUT an admin key ({Override}=true): anyone who reaches it can open the dashboard, reload the repository and roll models out or back")]
    private static partial void LogOpen(ILogger logger, string addresses, string @override);
}
