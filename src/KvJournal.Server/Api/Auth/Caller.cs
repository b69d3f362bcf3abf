using Grpc.Core;
using KvJournal.Member.Shards;
using KvJournal.Protos.Journal;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Auth;
using Microsoft.AspNetCore.Http;

namespace KvJournal.Server.Api.Auth;

/// <summary>
/// Who a request is made as once auth is enabled (etcd's AuthInfoFromCtx): the user of the simple
/// token in the "token" metadata (or the gateway's "authorization" header), else, under
/// --client-cert-auth, the common name of the client certificate; else nobody (""), whom every
/// permission check refuses with "user name is empty".
/// </summary>
public sealed class Caller
{
    private readonly Shard _shard;

    private Caller(Shard shard, string user)
    {
        _shard = shard;
        User = user;
    }

    /// <summary>The user name; "" when the request carries no credentials or auth is off.</summary>
    public string User { get; }

    /// <summary>Resolves the caller of a gRPC request; an unknown or expired token is etcd's "invalid auth token".</summary>
    public static Caller Of(ServerCallContext context, Shard shard, ServerOptions options) =>
        // With auth off nothing is read: building the call's Metadata copies every header.
        !shard.Auth.Enabled
            ? new Caller(shard, "")
            : Of(context.RequestHeaders.GetValue("token") ?? context.RequestHeaders.GetValue("authorization"),
                // etcd's gateway is a gRPC client of its own: the HTTP client's certificate names no user there.
                context is Gateway.GatewayCall ? null : context.GetHttpContext(), shard, options);

    public static Caller Of(string? token, HttpContext? http, Shard shard, ServerOptions options)
    {
        if (!shard.Auth.Enabled) return new Caller(shard, "");
        if (token is not null)
        {
            if (token.StartsWith("Bearer ", StringComparison.Ordinal)) token = token["Bearer ".Length..];
            if (!shard.Auth.Tokens.TryGetUser(token, shard.NowUnixMs(), out var user))
                EtcdErrors.Throw(EtcdError.InvalidAuthToken);
            return new Caller(shard, user);
        }
        if (options.ClientCertAuth && http?.Connection.ClientCertificate is { } cert)
            return new Caller(shard, cert.GetNameInfo(System.Security.Cryptography.X509Certificates.X509NameType.SimpleName, forIssuer: false));
        return new Caller(shard, "");
    }

    // Marks a journal entry as made by this caller; the applier checks its permissions.
    private JournalEntry Stamp(JournalEntry entry)
    {
        entry.AuthUser = User;
        return entry;
    }

    /// <summary>
    /// Proposes <paramref name="entry"/> as this caller and returns the applied response; etcd's
    /// error comes back as an RpcException. The response's header is left to the service.
    /// </summary>
    public async Task<TResponse> ProposeAsync<TResponse>(JournalEntry entry, CancellationToken cancellationToken)
    {
        var result = await _shard.ProposeAsync(Stamp(entry), cancellationToken).ConfigureAwait(false);
        if (result.Error != EtcdError.None) EtcdErrors.Throw(result.Error);
        return (TResponse)result.Response!;
    }

    /// <summary>Throws etcd's error unless the caller may read [key, rangeEnd).</summary>
    public void CheckRead(Google.Protobuf.ByteString key, Google.Protobuf.ByteString rangeEnd) =>
        Check((key, rangeEnd), static (auth, user, range) => auth.CheckRead(user, range.key, range.rangeEnd));

    /// <summary>Throws etcd's error unless the caller is an admin (has the root role).</summary>
    public void CheckAdmin() => Check(0, static (auth, user, _) => auth.CheckAdmin(user));

    /// <summary>Throws unless the request names a user at all (etcd's requireAuthInfo, for Status and alarm listing).</summary>
    public void RequireUser()
    {
        if (_shard.Auth.Enabled && User.Length == 0) EtcdErrors.Throw(EtcdError.UserEmpty);
    }

    /// <summary>
    /// Runs a permission check, given the caller's user name and <paramref name="state"/>, against the
    /// applied auth state under the store's read lock. With auth off it returns at once: callers on
    /// hot paths pass static lambdas, so nothing is allocated then.
    /// </summary>
    public void Check<TState>(TState state, Func<AuthStore, string, TState, EtcdError> check)
    {
        if (!_shard.Auth.Enabled) return;
        var error = _shard.Read(_ => check(_shard.Auth, User, state));
        if (error != EtcdError.None) EtcdErrors.Throw(error);
    }
}
