using System.Text.Json;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// https:// client URLs with client certificates (--cert-file, --key-file, --trusted-ca-file,
/// --client-cert-auth), driven by etcdctl, curl and a gRPC client, with certificates made by the test.
/// </summary>
public sealed class TlsTests : IDisposable
{
    private readonly string _dir = Paths.NewTempDir("tls");
    private readonly TlsFiles _tls;

    public TlsTests() => _tls = TlsFiles.Create(_dir);

    public void Dispose() => Paths.DeleteDir(_dir);

    private Task<Etcdctl.Result> EtcdctlAsync(ServerProcess server, string? cert, string? key, params string[] args)
    {
        var all = new List<string> { $"--cacert={_tls.CaCert}" };
        if (cert is not null) all.AddRange([$"--cert={cert}", $"--key={key}"]);
        all.AddRange(args);
        return Etcdctl.RunAsync($"https://{server.Endpoint}", null, [.. all]);
    }

    [Fact]
    public async Task UnderClientCertAuthTheCertificatesCommonNameIsTheUser()
    {
        await using var kvj = await KvJournalProcess.StartWithTlsAsync(_tls);
        async Task<string> As(params string[] args) => (await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, args)).Normalized();
        Assert.Equal("exit 0 | User root created\\n |", (await As("user", "add", "root", "--no-password")).TrimEnd());
        await As("user", "grant-role", "root", "root");
        await As("user", "add", "bob:bobpw");
        Assert.Equal("exit 0 | Authentication Enabled\\n |", (await As("auth", "enable")).TrimEnd());
        // No token: the certificate (CN=root) makes the request root's.
        Assert.Equal("exit 0 | OK\\n |", (await As("put", "k", "v")).TrimEnd());
        Assert.Equal("exit 0 | Authentication Status: true\\nAuthRevision: 4\\n |", (await As("auth", "status")).TrimEnd());
        // A token wins over the certificate: bob has no role.
        Assert.Equal("exit 1 |  | Error: etcdserver: permission denied", await As("--user=bob:bobpw", "get", "k"));
        // root was added without a password: only its certificate logs it in.
        Assert.Contains("password was given for no password user", await As("--user=root:guess", "get", "k"));
    }

    /// <summary>
    /// etcd's JSON gateway is a gRPC client of its own server, so the HTTP client's certificate names
    /// no user there: without a token a gateway call is anonymous, even with a CN=root certificate.
    /// </summary>
    [Fact]
    public async Task TheJsonGatewayDoesNotTakeTheClientCertificatesCommonNameAsTheUser()
    {
        await using var kvj = await KvJournalProcess.StartWithTlsAsync(_tls);
        Assert.Equal(0, (await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, "user", "add", "root:rootpw")).ExitCode);
        await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, "user", "grant-role", "root", "root");
        Assert.Equal(0, (await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, "auth", "enable")).ExitCode);
        string[] mtls = ["--cacert", _tls.CaCert, "--cert", _tls.ClientCert, "--key", _tls.ClientKey, "-X", "POST"];
        var anonymous = await Curl.GetAsync($"https://{kvj.Endpoint}/v3/kv/put", [.. mtls, "-d", """{"key":"Zm9v","value":"YmFy"}"""]);
        Assert.Equal(400, anonymous.Status);
        Assert.Equal("etcdserver: user name is empty", JsonDocument.Parse(anonymous.Body).RootElement.GetProperty("message").GetString());
        var login = await Curl.GetAsync($"https://{kvj.Endpoint}/v3/auth/authenticate", [.. mtls, "-d", """{"name":"root","password":"rootpw"}"""]);
        string token = JsonDocument.Parse(login.Body).RootElement.GetProperty("token").GetString()!;
        var put = await Curl.GetAsync($"https://{kvj.Endpoint}/v3/kv/put", [.. mtls, "-H", $"Authorization: {token}", "-d", """{"key":"Zm9v","value":"YmFy"}"""]);
        Assert.Equal(200, put.Status);
    }

    [Fact]
    public async Task EtcdctlWithAClientCertificateIsServedOverHttps()
    {
        await using var kvj = await KvJournalProcess.StartWithTlsAsync(_tls);
        Assert.Equal("OK", (await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, "put", "secure", "yes")).Stdout.Trim());
        Assert.Equal("secure\nyes", (await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, "get", "secure")).Stdout.Trim());
        var status = await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, "endpoint", "status", "-w", "json");
        Assert.Equal("3.6.0", JsonDocument.Parse(status.Stdout).RootElement[0].GetProperty("Status").GetProperty("version").GetString());
        var health = await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, "endpoint", "health");
        Assert.Equal(0, health.ExitCode);
        var members = await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, "member", "list", "-w", "json");
        Assert.Equal($"https://{kvj.Endpoint}", JsonDocument.Parse(members.Stdout).RootElement.GetProperty("members")[0].GetProperty("clientURLs")[0].GetString());

        foreach (var command in new[] { new[] { "endpoint", "hashkv" }, ["alarm", "list"], ["defrag"] })
            Assert.Equal(0, (await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, command)).ExitCode);
        string snapshot = Path.Combine(_dir, "snap.db");
        Assert.Equal($"Snapshot saved at {snapshot}", (await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, "snapshot", "save", snapshot)).Stdout.Trim());
        byte[] bytes = await File.ReadAllBytesAsync(snapshot);
        Assert.Equal(System.Security.Cryptography.SHA256.HashData(bytes.AsSpan(0, bytes.Length - 32)), bytes[^32..]);

        // A .NET gRPC client with the certificate, and curl's HTTP/1.1 on the same TLS port.
        var range = await kvj.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("secure") });
        Assert.Equal("yes", range.Kvs.Single().Value.ToStringUtf8());
        Assert.Equal("{\"health\":\"true\",\"reason\":\"\"}", await CurlAsync(kvj, "/health", withClientCertificate: true));
    }

    [Fact]
    public async Task ClientsWithoutATrustedCertificateAreRefused()
    {
        await using var kvj = await KvJournalProcess.StartWithTlsAsync(_tls);
        var none = await EtcdctlAsync(kvj, null, null, "--command-timeout=3s", "get", "x");
        Assert.NotEqual(0, none.ExitCode);
        var stranger = await EtcdctlAsync(kvj, _tls.StrangerCert, _tls.StrangerKey, "--command-timeout=3s", "get", "x");
        Assert.NotEqual(0, stranger.ExitCode);
        Assert.Equal("", await CurlAsync(kvj, "/health", withClientCertificate: false));
        // The trusted one still works.
        Assert.Equal(0, (await EtcdctlAsync(kvj, _tls.ClientCert, _tls.ClientKey, "get", "x")).ExitCode);
    }

    // The body curl printed; empty when the TLS handshake was refused.
    private async Task<string> CurlAsync(ServerProcess server, string path, bool withClientCertificate)
    {
        string[] options = withClientCertificate
            ? ["--cacert", _tls.CaCert, "--cert", _tls.ClientCert, "--key", _tls.ClientKey]
            : ["--cacert", _tls.CaCert];
        return (await Curl.GetAsync($"https://{server.Endpoint}{path}", options)).Body;
    }
}
