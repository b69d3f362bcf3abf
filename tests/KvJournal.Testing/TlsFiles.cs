using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace KvJournal.Testing;

/// <summary>
/// A throwaway PKI written as PEM files: a CA, a server certificate for 127.0.0.1, a client
/// certificate from that CA, and a client certificate from an unrelated CA (which mTLS must refuse).
/// </summary>
public sealed class TlsFiles
{
    private TlsFiles(string dir) => Dir = dir;

    public string Dir { get; }
    public string CaCert => Path.Combine(Dir, "ca.pem");
    public string ServerCert => Path.Combine(Dir, "server.pem");
    public string ServerKey => Path.Combine(Dir, "server-key.pem");
    public string ClientCert => Path.Combine(Dir, "client.pem");
    public string ClientKey => Path.Combine(Dir, "client-key.pem");
    public string StrangerCert => Path.Combine(Dir, "stranger.pem");
    public string StrangerKey => Path.Combine(Dir, "stranger-key.pem");

    public static TlsFiles Create(string dir)
    {
        var files = new TlsFiles(dir);
        using var ca = NewCa("kvjournal test CA");
        using var otherCa = NewCa("someone else's CA");
        File.WriteAllText(files.CaCert, ca.ExportCertificatePem());
        Issue(ca, "127.0.0.1", server: true, files.ServerCert, files.ServerKey);
        Issue(ca, "root", server: false, files.ClientCert, files.ClientKey);
        Issue(otherCa, "root", server: false, files.StrangerCert, files.StrangerKey);
        return files;
    }

    /// <summary>The client certificate with its key, for a .NET client.</summary>
    public X509Certificate2 LoadClientCertificate() => X509Certificate2.CreateFromPemFile(ClientCert, ClientKey);

    public X509Certificate2 LoadCa() => X509Certificate2.CreateFromPem(File.ReadAllText(CaCert));

    // Trusts only the test CA and presents the test client certificate.
    public SocketsHttpHandler ClientHandler()
    {
        var ca = LoadCa();
        return new SocketsHttpHandler
        {
            SslOptions =
            {
                ClientCertificates = [LoadClientCertificate()],
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                {
                    if (certificate is null) return false;
                    using var chain = new System.Security.Cryptography.X509Certificates.X509Chain();
                    chain.ChainPolicy.TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust;
                    chain.ChainPolicy.CustomTrustStore.Add(ca);
                    chain.ChainPolicy.RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck;
                    return chain.Build(new System.Security.Cryptography.X509Certificates.X509Certificate2(certificate));
                },
            },
        };
    }

    private static X509Certificate2 NewCa(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
    }

    private static void Issue(X509Certificate2 ca, string commonName, bool server, string certPath, string keyPath)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={commonName}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [server ? new Oid("1.3.6.1.5.5.7.3.1") : new Oid("1.3.6.1.5.5.7.3.2")], false));
        if (server)
        {
            var san = new SubjectAlternativeNameBuilder();
            san.AddIpAddress(IPAddress.Loopback);
            san.AddDnsName("localhost");
            request.CertificateExtensions.Add(san.Build());
        }
        byte[] serial = RandomNumberGenerator.GetBytes(12);
        using var cert = request.Create(ca, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(12), serial);
        File.WriteAllText(certPath, cert.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
    }
}
