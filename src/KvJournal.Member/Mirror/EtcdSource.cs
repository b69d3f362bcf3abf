using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Etcdserverpb;
using Grpc.Core;
using Grpc.Net.Client;

namespace KvJournal.Member.Mirror;

/// <summary>How to reach the etcd cluster a mirror follows: its endpoint, a user, and TLS files.</summary>
public sealed record EtcdSourceOptions(Uri Endpoint, string? User = null, string? Password = null, string? CaFile = null, string? CertFile = null, string? KeyFile = null)
{
    /// <summary>A client URL as etcdctl takes it: http://, https://, or a bare host:port (http); null for anything else.</summary>
    public static Uri? ParseEndpoint(string value) =>
        Uri.TryCreate(value.Contains("://", StringComparison.Ordinal) ? value : "http://" + value, UriKind.Absolute, out var url) && url.Scheme is "http" or "https" ? url : null;

    /// <summary>etcdctl's --user NAME[:PASSWORD].</summary>
    public static (string User, string Password) ParseUser(string value)
    {
        int colon = value.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? (value, "") : (value[..colon], value[(colon + 1)..]);
    }
}

/// <summary>
/// A client of the etcd cluster a mirror follows, as etcdctl is one: a gRPC channel (TLS with the
/// given CA and client certificate), and a simple token from the user's password, fetched again
/// when the source says it is no longer valid.
/// </summary>
public sealed class EtcdSource : IDisposable
{
    private readonly GrpcChannel _channel;
    private readonly EtcdSourceOptions _options;
    private Metadata? _headers;

    public EtcdSource(EtcdSourceOptions options)
    {
        _options = options;
        var handler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true };
        if (options.Endpoint.Scheme == "https")
        {
            handler.SslOptions = new SslClientAuthenticationOptions();
            if (options.CaFile is { } ca)
            {
                var trusted = new X509Certificate2Collection();
                trusted.ImportFromPemFile(ca);
                handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                {
                    if (certificate is null) return false;
                    if (errors == SslPolicyErrors.None) return true;
                    using var chain = new X509Chain();
                    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                    chain.ChainPolicy.CustomTrustStore.AddRange(trusted);
                    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                    return (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == SslPolicyErrors.None && chain.Build(new X509Certificate2(certificate));
                };
            }
            if (options.CertFile is { } cert && options.KeyFile is { } key)
                handler.SslOptions.ClientCertificates = [X509Certificate2.CreateFromPemFile(cert, key)];
        }
        // A source (or probed member) that was away is tried again within a second or two, not
        // after gRPC's default backoff, which grows to two minutes.
        _channel = GrpcChannel.ForAddress(options.Endpoint, new GrpcChannelOptions
        {
            HttpHandler = handler,
            MaxReceiveMessageSize = null,
            InitialReconnectBackoff = TimeSpan.FromMilliseconds(200),
            MaxReconnectBackoff = TimeSpan.FromSeconds(1),
        });
        Kv = new KV.KVClient(_channel);
        Watch = new Watch.WatchClient(_channel);
        Lease = new Lease.LeaseClient(_channel);
        Maintenance = new Maintenance.MaintenanceClient(_channel);
    }

    public Uri Endpoint => _options.Endpoint;
    public KV.KVClient Kv { get; }
    public Watch.WatchClient Watch { get; }
    public Lease.LeaseClient Lease { get; }
    public Maintenance.MaintenanceClient Maintenance { get; }

    /// <summary>The headers a call carries: the user's token when a user is given.</summary>
    public async Task<Metadata> HeadersAsync(CancellationToken cancellationToken)
    {
        if (_headers is { } known) return known;
        var headers = new Metadata();
        if (_options.User is { } user)
        {
            var auth = new Auth.AuthClient(_channel);
            var token = await auth.AuthenticateAsync(new AuthenticateRequest { Name = user, Password = _options.Password ?? "" }, cancellationToken: cancellationToken).ConfigureAwait(false);
            headers.Add("token", token.Token);
        }
        return _headers = headers;
    }

    /// <summary>A call made with the token, made again once with a new token when the old one expired.</summary>
    public async Task<T> CallAsync<T>(Func<Metadata, Task<T>> call, CancellationToken cancellationToken)
    {
        try
        {
            return await call(await HeadersAsync(cancellationToken).ConfigureAwait(false)).ConfigureAwait(false);
        }
        catch (RpcException ex) when (IsExpiredToken(ex))
        {
            ForgetToken();
            return await call(await HeadersAsync(cancellationToken).ConfigureAwait(false)).ConfigureAwait(false);
        }
    }

    public static bool IsExpiredToken(RpcException ex) => ex.Status.Detail == "etcdserver: invalid auth token";

    public void ForgetToken() => _headers = null;

    /// <summary>
    /// Saves the source's snapshot (Maintenance.Snapshot: its database, then the SHA-256 of it) to
    /// <paramref name="path"/> as etcdctl does, checking the checksum.
    /// </summary>
    public async Task SaveSnapshotAsync(string path, CancellationToken cancellationToken)
    {
        var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
        await using (output.ConfigureAwait(false))
        {
            using var call = Maintenance.Snapshot(new SnapshotRequest(), await HeadersAsync(cancellationToken).ConfigureAwait(false), cancellationToken: cancellationToken);
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            byte[] last = [];
            while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            {
                // The checksum is the last message: hash every blob but the one held back.
                sha.AppendData(last);
                await output.WriteAsync(last, cancellationToken).ConfigureAwait(false);
                last = call.ResponseStream.Current.Blob.ToByteArray();
            }
            if (last.Length != 32 || !sha.GetHashAndReset().AsSpan().SequenceEqual(last))
                throw new InvalidDataException($"the snapshot from {Endpoint} does not end with the SHA-256 of its database");
            await output.WriteAsync(last, cancellationToken).ConfigureAwait(false);
        }
    }

    public void Dispose() => _channel.Dispose();
}
