using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace KvJournal.Server.Hosting;

/// <summary>
/// TLS for https:// client URLs from etcd's flags: the server certificate and key (PEM), and with
/// --client-cert-auth a client certificate that must chain to --trusted-ca-file (mTLS).
/// </summary>
public static class ClientTls
{
    public static HttpsConnectionAdapterOptions Options(ServerOptions options)
    {
        var https = new HttpsConnectionAdapterOptions
        {
            ServerCertificate = X509Certificate2.CreateFromPemFile(options.CertFile!, options.KeyFile!),
        };
        if (options.TrustedCaFile is null) return https;

        var trusted = new X509Certificate2Collection();
        trusted.ImportFromPemFile(options.TrustedCaFile);
        https.ClientCertificateMode = options.ClientCertAuth ? ClientCertificateMode.RequireCertificate : ClientCertificateMode.AllowCertificate;
        https.ClientCertificateValidation = (certificate, _, _) => ChainsTo(certificate, trusted);
        return https;
    }

    // Only the given CA counts as a root, not the machine's store; revocation is not checked (etcd
    // checks CRLs only when given --client-crl-file, which KvJournal does not take yet).
    private static bool ChainsTo(X509Certificate2 certificate, X509Certificate2Collection trusted)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(trusted);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate);
    }
}
