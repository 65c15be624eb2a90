using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using StreamInfer.Grains.Hosting;
using StreamInfer.Silo;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Hosting;

/// <summary>
/// TLS on the cluster's connections (<c>StreamInfer:Orleans:Tls</c>): two standalone silos with the cluster certificate
/// form one cluster through a real redis-server, a client with the certificate calls grains, and a client without it
/// (or with a certificate of its own) cannot connect to a gateway. Slow: it starts redis-server; CI runs it.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ClusterTlsTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "streaminfer-tests", "tls-" + Guid.NewGuid().ToString("N"));
    private readonly string _clusterId = "tls-" + Guid.NewGuid().ToString("N")[..8];
    private readonly List<IHost> _hosts = [];
    private RedisServer _redis = null!;
    private string _certificate = null!;
    private int _gateway;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_folder);
        _certificate = WriteCertificate("cluster");
        _redis = await RedisServer.StartAsync();
        foreach (var i in new[] { 1, 2 })
        {
            var gateway = Ports.Free();
            _gateway = gateway;
            var silo = SiloHost.Build([], b => b.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Logging:LogLevel:Default"] = "Warning",
                ["StreamInfer:Orleans:Redis"] = _redis.ConnectionString,
                ["StreamInfer:Orleans:ClusterId"] = _clusterId,
                ["StreamInfer:Orleans:SiloName"] = $"tls-silo-{i}",
                ["StreamInfer:Orleans:SiloPort"] = Ports.FreeText(),
                ["StreamInfer:Orleans:GatewayPort"] = gateway.ToString(CultureInfo.InvariantCulture),
                ["StreamInfer:Orleans:Tls:CertificatePath"] = _certificate,
                ["StreamInfer:Orleans:Tls:Password"] = "secret",
                ["StreamInfer:Repository:Path"] = Path.Combine(_folder, "models"),
                ["StreamInfer:Repository:BuiltInTinyLm"] = "false",
                ["StreamInfer:Repository:BuiltInVadLite"] = "false",
            }));
            _hosts.Add(silo);
            await silo.StartAsync();
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var host in Enumerable.Reverse(_hosts))
        {
            await host.StopAsync();
            host.Dispose();
        }

        await _redis.DisposeAsync();
    }

    [Fact]
    public async Task Cluster_TwoSilosWithTheCertificate_FormOneClusterAndOnlyAClientWithItConnects()
    {
        using var member = await StartClientAsync(new ClusterTlsOptions { CertificatePath = _certificate, Password = "secret" });
        var management = member.Services.GetRequiredService<IClusterClient>().GetGrain<IManagementGrain>(0);
        // Silo to silo over TLS: each has seen the other's probes answered.
        var active = await Eventually.UntilAsync(() => management.GetHosts(onlyActive: true), h => h.Count == 2, Deadline, "both silos are active");
        Assert.Equal(2, active.Count);

        var strangers = new[] { new ClusterTlsOptions(), new ClusterTlsOptions { CertificatePath = WriteCertificate("stranger"), Password = "secret" } };
        foreach (var tls in strangers)
        {
            await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                using var stranger = await StartClientAsync(tls);
                await stranger.Services.GetRequiredService<IClusterClient>().GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true);
            });
        }
    }

    /// <summary>A client of the cluster as a stranger would write it: the ids and one gateway, no retry.</summary>
    private async Task<IHost> StartClientAsync(ClusterTlsOptions tls)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        builder.UseOrleansClient(client =>
        {
            client.UseStaticClustering(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, _gateway));
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = _clusterId;
                o.ServiceId = "streaminfer";
            });
            client.UseStreamInferTls(tls);
        });
        var host = builder.Build();
        try
        {
            await host.StartAsync().WaitAsync(Deadline);
            return host;
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    /// <summary>A self-signed certificate with its key, in a PKCS#12 file with password "secret", as cluster-up.sh writes one.</summary>
    private string WriteCertificate(string name)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN=streaminfer-{name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], critical: false));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        var path = Path.Combine(_folder, name + ".pfx");
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pkcs12, "secret"));
        return path;
    }
}

/// <summary>Which peers the cluster's TLS accepts, and the certificate formats it loads.</summary>
public sealed class ClusterTlsTrustTests
{
    [Fact]
    public void Trusted_TheClusterCertificateItself_Accepted()
    {
        using var cluster = SelfSigned("cluster");
        using var same = X509CertificateLoader.LoadCertificate(cluster.RawData);

        Assert.True(ClusterTls.Trusted(same, cluster, []));
    }

    [Fact]
    public void Trusted_AnotherSelfSignedCertificate_Refused()
    {
        using var cluster = SelfSigned("cluster");
        using var stranger = SelfSigned("cluster");

        Assert.False(ClusterTls.Trusted(stranger, cluster, []));
    }

    [Fact]
    public void Trusted_ACertificateOfTheConfiguredAuthority_AcceptedAndAnotherIssuersRefused()
    {
        using var authority = SelfSigned("ca", ca: true);
        using var cluster = SelfSigned("cluster");
        using var peer = IssuedBy(authority, "peer");
        using var otherAuthority = SelfSigned("other-ca", ca: true);
        using var stranger = IssuedBy(otherAuthority, "peer");

        Assert.True(ClusterTls.Trusted(peer, cluster, [authority]));
        Assert.False(ClusterTls.Trusted(stranger, cluster, [authority]));
    }

    [Fact]
    public void Load_PemCertificateAndKey_HasItsPrivateKey()
    {
        using var certificate = SelfSigned("pem");
        var folder = Directory.CreateTempSubdirectory("streaminfer-tls-").FullName;
        var certPath = Path.Combine(folder, "cert");
        var keyPath = Path.Combine(folder, "key");
        File.WriteAllText(certPath, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, certificate.GetRSAPrivateKey()!.ExportPkcs8PrivateKeyPem());

        using var loaded = ClusterTls.Load(new ClusterTlsOptions { CertificatePath = certPath, KeyPath = keyPath });

        Assert.True(loaded.HasPrivateKey);
        Assert.Equal(certificate.Thumbprint, loaded.Thumbprint);
    }

    [Fact]
    public void Load_MissingFile_NamesTheSetting()
    {
        var failure = Assert.Throws<InvalidOperationException>(() => ClusterTls.Load(new ClusterTlsOptions { CertificatePath = "/no/such/cluster.pfx" }));

        Assert.Contains("StreamInfer:Orleans:Tls:CertificatePath", failure.Message, StringComparison.Ordinal);
    }

    private static X509Certificate2 SelfSigned(string name, bool ca = false)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        if (ca)
        {
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        }

        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
    }

    private static X509Certificate2 IssuedBy(X509Certificate2 authority, string name)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        return request.Create(authority, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(10), [1, 2, 3, 4]);
    }
}
