using System.Security.Cryptography;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Member.Leases;
using KvJournal.Member.Shards;
using KvJournal.Protos.Journal;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Auth;

namespace KvJournal.Server.Api.Auth;

/// <summary>
/// etcd's Auth service. Changes are journal entries made as the caller (the applier checks that an
/// admin made them once auth is on); passwords are hashed here, so the journal never holds one in
/// plain text; reads come from the applied auth state after a linearizable wait, as etcd serves
/// them through raft.
/// </summary>
[BindServiceMethod(typeof(AuthService), nameof(BindService))]
public sealed class AuthService(Shard shard, ServerOptions options) : Etcdserverpb.Auth.AuthBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Auth.AuthBase? service) =>
        Etcdserverpb.Auth.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<AuthEnableResponse> AuthEnable(AuthEnableRequest request, ServerCallContext context) =>
        ProposeAsync<AuthEnableResponse>(new JournalEntry { AuthEnable = request }, context);

    public override Task<AuthDisableResponse> AuthDisable(AuthDisableRequest request, ServerCallContext context) =>
        ProposeAsync<AuthDisableResponse>(new JournalEntry { AuthDisable = request }, context);

    public override async Task<AuthStatusResponse> AuthStatus(AuthStatusRequest request, ServerCallContext context)
    {
        Caller.Of(context, shard, options).CheckAdmin(); // an admin request in etcd 3.5
        await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
        var response = shard.Read(txn => new AuthStatusResponse
        {
            Header = new ResponseHeader { Revision = txn.ReadRevision },
            Enabled = shard.Auth.Enabled,
            AuthRevision = shard.Auth.Revision,
        });
        ResponseHeaders.Fill(response.Header, shard);
        return response;
    }

    /// <summary>
    /// Checks the password against the applied state, then journals the login with a fresh token;
    /// if the auth state changed in between, checks again (etcd's Authenticate loop).
    /// </summary>
    public override async Task<AuthenticateResponse> Authenticate(AuthenticateRequest request, ServerCallContext context)
    {
        await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
        for (int attempt = 0; ; attempt++)
        {
            var (error, stored, revision) = shard.Read(_ =>
            {
                var auth = shard.Auth;
                if (!auth.Enabled) return (EtcdError.AuthNotEnabled, ByteString.Empty, 0UL);
                var user = auth.GetUser(request.Name);
                if (user is null) return (EtcdError.AuthFailed, ByteString.Empty, 0UL);
                if (user.Options?.NoPassword == true) return (EtcdError.NoPasswordUser, ByteString.Empty, 0UL);
                return (EtcdError.None, user.Password, auth.Revision);
            });
            if (error != EtcdError.None) EtcdErrors.Throw(error);
            // The costly hash runs outside the lock.
            if (!PasswordHash.Verify(request.Password, stored.Span)) EtcdErrors.Throw(EtcdError.AuthFailed);
            var login = new Protos.Journal.Authenticate { Name = request.Name, Token = NewToken(), CheckedRevision = revision, AtUnixMs = shard.NowUnixMs() };
            var result = await shard.ProposeAsync(new JournalEntry { Authenticate = login }, context.CancellationToken).ConfigureAwait(false);
            if (result.Error == EtcdError.AuthOldRevision && attempt < 5) continue;
            if (result.Error != EtcdError.None) EtcdErrors.Throw(result.Error);
            var response = (AuthenticateResponse)result.Response!;
            ResponseHeaders.Fill(response.Header, shard);
            return response;
        }
    }

    public override Task<AuthUserAddResponse> UserAdd(AuthUserAddRequest request, ServerCallContext context)
    {
        var entry = request.Clone();
        if (entry.Options?.NoPassword != true) entry.HashedPassword = PasswordHash.Hash(entry.Password);
        entry.Password = "";
        return ProposeAsync<AuthUserAddResponse>(new JournalEntry { UserAdd = entry }, context);
    }

    public override Task<AuthUserDeleteResponse> UserDelete(AuthUserDeleteRequest request, ServerCallContext context) =>
        ProposeAsync<AuthUserDeleteResponse>(new JournalEntry { UserDelete = request }, context);

    public override Task<AuthUserChangePasswordResponse> UserChangePassword(AuthUserChangePasswordRequest request, ServerCallContext context)
    {
        var entry = request.Clone();
        entry.HashedPassword = PasswordHash.Hash(entry.Password);
        entry.Password = "";
        return ProposeAsync<AuthUserChangePasswordResponse>(new JournalEntry { UserChangePassword = entry }, context);
    }

    public override Task<AuthUserGrantRoleResponse> UserGrantRole(AuthUserGrantRoleRequest request, ServerCallContext context) =>
        ProposeAsync<AuthUserGrantRoleResponse>(new JournalEntry { UserGrantRole = request }, context);

    public override Task<AuthUserRevokeRoleResponse> UserRevokeRole(AuthUserRevokeRoleRequest request, ServerCallContext context) =>
        ProposeAsync<AuthUserRevokeRoleResponse>(new JournalEntry { UserRevokeRole = request }, context);

    public override Task<AuthRoleAddResponse> RoleAdd(AuthRoleAddRequest request, ServerCallContext context) =>
        ProposeAsync<AuthRoleAddResponse>(new JournalEntry { RoleAdd = request }, context);

    public override Task<AuthRoleDeleteResponse> RoleDelete(AuthRoleDeleteRequest request, ServerCallContext context) =>
        ProposeAsync<AuthRoleDeleteResponse>(new JournalEntry { RoleDelete = request }, context);

    public override Task<AuthRoleGrantPermissionResponse> RoleGrantPermission(AuthRoleGrantPermissionRequest request, ServerCallContext context) =>
        ProposeAsync<AuthRoleGrantPermissionResponse>(new JournalEntry { RoleGrantPermission = request }, context);

    public override Task<AuthRoleRevokePermissionResponse> RoleRevokePermission(AuthRoleRevokePermissionRequest request, ServerCallContext context) =>
        ProposeAsync<AuthRoleRevokePermissionResponse>(new JournalEntry { RoleRevokePermission = request }, context);

    // Users may read themselves and roles they hold; listing and reading others takes an admin.
    public override Task<AuthUserGetResponse> UserGet(AuthUserGetRequest request, ServerCallContext context) =>
        ReadAsync(context, (auth, caller) =>
        {
            if (request.Name != caller.User && auth.CheckAdmin(caller.User) is var denied && denied != EtcdError.None) return (denied, null);
            var user = auth.GetUser(request.Name);
            if (user is null) return (EtcdError.UserNotFound, null);
            var r = new AuthUserGetResponse();
            r.Roles.AddRange(user.Roles);
            return (EtcdError.None, r);
        });

    public override Task<AuthUserListResponse> UserList(AuthUserListRequest request, ServerCallContext context) =>
        ReadAsync(context, (auth, caller) =>
        {
            if (auth.CheckAdmin(caller.User) is var denied && denied != EtcdError.None) return (denied, null);
            var r = new AuthUserListResponse();
            foreach (var u in auth.Users) r.Users.Add(u.Name.ToStringUtf8());
            return (EtcdError.None, r);
        });

    public override Task<AuthRoleGetResponse> RoleGet(AuthRoleGetRequest request, ServerCallContext context) =>
        ReadAsync(context, (auth, caller) =>
        {
            if (!auth.HasRole(caller.User, request.Role) && auth.CheckAdmin(caller.User) is var denied && denied != EtcdError.None) return (denied, null);
            var permissions = auth.PermissionsOf(request.Role);
            if (permissions is null) return (EtcdError.RoleNotFound, null);
            var r = new AuthRoleGetResponse();
            foreach (var p in permissions) r.Perm.Add(p.Clone());
            return (EtcdError.None, r);
        });

    public override Task<AuthRoleListResponse> RoleList(AuthRoleListRequest request, ServerCallContext context) =>
        ReadAsync(context, (auth, caller) =>
        {
            if (auth.CheckAdmin(caller.User) is var denied && denied != EtcdError.None) return (denied, null);
            var r = new AuthRoleListResponse();
            foreach (var role in auth.Roles) r.Roles.Add(role.Name.ToStringUtf8());
            return (EtcdError.None, r);
        });

    private async Task<TResponse> ProposeAsync<TResponse>(JournalEntry entry, ServerCallContext context) where TResponse : IMessage
    {
        var response = await Caller.Of(context, shard, options).ProposeAsync<TResponse>(entry, context.CancellationToken).ConfigureAwait(false);
        ResponseHeaders.Fill((ResponseHeader)response.Descriptor.FindFieldByName("header").Accessor.GetValue(response), shard);
        return response;
    }

    private async Task<TResponse> ReadAsync<TResponse>(ServerCallContext context, Func<AuthStore, Caller, (EtcdError, TResponse?)> read)
        where TResponse : class, IMessage
    {
        var caller = Caller.Of(context, shard, options);
        await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
        var (error, response, revision) = shard.Read(txn =>
        {
            var (e, r) = read(shard.Auth, caller);
            return (e, r, txn.ReadRevision);
        });
        if (error != EtcdError.None) EtcdErrors.Throw(error);
        var header = new ResponseHeader { Revision = revision };
        response!.Descriptor.FindFieldByName("header").Accessor.SetValue(response, ResponseHeaders.Fill(header, shard));
        return response;
    }

    // etcd's simple token: 16 random letters, a dot and a number that makes it unique.
    private static string NewToken()
    {
        const string letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        Span<char> chars = stackalloc char[16];
        for (int i = 0; i < chars.Length; i++) chars[i] = letters[RandomNumberGenerator.GetInt32(letters.Length)];
        return $"{chars}.{Interlocked.Increment(ref _tokens)}";
    }

    private static long _tokens;
}
