using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Orleans.Connections.Security;

namespace StreamInfer.Grains.Hosting;

/// <summary>
/// TLS on the cluster's own connections: silo to silo, and a frontend (an Orleans client) to a silo's gateway. Section
/// <c>StreamInfer:Orleans:Tls</c>. Off while <see cref="CertificatePath"/> is empty (the embedded default, whose ports
/// are on loopback). On, every connection is mutually authenticated: each side shows the cluster certificate and accepts
/// only a peer that shows it too (or one issued by <see cref="CaPath"/>), so a host without the certificate can neither
/// join as a silo nor connect as a client.
/// </summary>
public sealed class ClusterTlsOptions
{
    /// <summary>
    /// The cluster certificate with its private key: a PKCS#12 file (<c>.pfx</c>/<c>.p12</c>, with
    /// <see cref="Password"/>), or a PEM certificate (told apart by its content) with its key in <see cref="KeyPath"/>
    /// or in the same file. Empty (the default): no TLS.
    /// </summary>
    public string? CertificatePath { get; set; }

    /// <summary>The PKCS#12 file's password, or the PEM key's when it is encrypted. Empty: none.</summary>
    public string? Password { get; set; }

    /// <summary>The PEM private key of a PEM <see cref="CertificatePath"/>. Empty: the key is in the certificate file.</summary>
    public string? KeyPath { get; set; }

    /// <summary>
    /// A PEM file of CA certificates: a peer whose certificate chains to one of them is accepted too (per-host
    /// certificates from one issuer). Empty (the default): only the cluster certificate itself is accepted.
    /// </summary>
    public string? CaPath { get; set; }

    /// <summary>Whether TLS is configured.</summary>
    public bool Enabled => !string.IsNullOrWhiteSpace(CertificatePath);
}

/// <summary>Applies <see cref="ClusterTlsOptions"/> to a silo or a client.</summary>
public static class ClusterTls
{
    /// <summary>TLS on the silo's inbound (silo and gateway) and outbound connections, when configured.</summary>
    public static ISiloBuilder UseStreamInferTls(this ISiloBuilder silo, ClusterTlsOptions tls)
        => tls.Enabled ? silo.UseTls(o => Configure(o, tls)) : silo;

    /// <summary>TLS on the client's connections to gateways, when configured.</summary>
    public static IClientBuilder UseStreamInferTls(this IClientBuilder client, ClusterTlsOptions tls)
        => tls.Enabled ? client.UseTls(o => Configure(o, tls)) : client;

    private static void Configure(TlsOptions options, ClusterTlsOptions tls)
    {
        var certificate = Load(tls);
        var authorities = string.IsNullOrWhiteSpace(tls.CaPath) ? [] : LoadAuthorities(tls.CaPath);
        options.LocalCertificate = certificate;
        options.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
        options.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
        // Peers are reached by address, and the cluster certificate is usually self-signed: the usual name and chain
        // checks say nothing here. What proves membership is holding the cluster's certificate (or its CA's).
        options.RemoteCertificateValidation = (remote, _, _) => Trusted(remote, certificate, authorities);
    }

    /// <summary>Whether <paramref name="remote"/> is the cluster certificate, or chains to one of <paramref name="authorities"/>.</summary>
    internal static bool Trusted(X509Certificate2 remote, X509Certificate2 cluster, X509Certificate2Collection authorities)
    {
        if (CryptographicOperations.FixedTimeEquals(remote.RawDataMemory.Span, cluster.RawDataMemory.Span))
        {
            return true;
        }

        if (authorities.Count == 0)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(authorities);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(remote);
    }

    /// <summary>Loads the cluster certificate with its private key; a clear error names the setting when it cannot.</summary>
    internal static X509Certificate2 Load(ClusterTlsOptions tls)
    {
        var path = tls.CertificatePath!;
        try
        {
            if (!IsPem(path))
            {
                return X509CertificateLoader.LoadPkcs12FromFile(path, tls.Password, X509KeyStorageFlags.EphemeralKeySet);
            }

            var key = string.IsNullOrWhiteSpace(tls.KeyPath) ? null : tls.KeyPath;
            using var pem = string.IsNullOrEmpty(tls.Password)
                ? X509Certificate2.CreateFromPemFile(path, key)
                : X509Certificate2.CreateFromEncryptedPemFile(path, tls.Password, key);
            // A PEM key is ephemeral; a PKCS#12 round trip gives SslStream a certificate it can use on every platform.
            return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null, X509KeyStorageFlags.EphemeralKeySet);
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException(
                $"{ClusterEndpointOptions.Section}:Tls:CertificatePath '{path}' could not be loaded with its private key ({ex.GetType().Name}: {ex.Message}).", ex);
        }
    }

    /// <summary>Whether the file is PEM text (a <c>-----BEGIN</c> line near its start) rather than PKCS#12's binary.</summary>
    private static bool IsPem(string path)
    {
        using var file = File.OpenRead(path);
        var head = new byte[256];
        var read = file.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        return System.Text.Encoding.ASCII.GetString(head, 0, read).Contains("-----BEGIN", StringComparison.Ordinal);
    }

    private static X509Certificate2Collection LoadAuthorities(string path)
    {
        var authorities = new X509Certificate2Collection();
        authorities.ImportFromPemFile(path);
        return authorities;
    }
}
