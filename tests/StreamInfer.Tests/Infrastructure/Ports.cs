using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace StreamInfer.Tests.Infrastructure;

public static class Ports
{
    /// <summary>A loopback port free right now (the OS picks it).</summary>
    public static int Free()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary><see cref="Free"/> as a configuration value.</summary>
    public static string FreeText() => Free().ToString(CultureInfo.InvariantCulture);
}
