using System.Security.Cryptography;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Auth;

namespace KvJournal.Member.Face;

// etcd's Auth service. Changes are journal entries made as the caller (the applier checks that an
// admin made them once auth is on); passwords are hashed here, so the journal never holds one in
// plain text; reads come from the applied auth state after a linearizable wait, as etcd serves
// them through raft.
public sealed partial class ShardServer
{
    public Task<AuthEnableResponse> AuthEnableAsync(AuthEnableRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthChangeAsync<AuthEnableResponse>(who, new JournalEntry { AuthEnable = request }, cancellationToken);

    public Task<AuthDisableResponse> AuthDisableAsync(AuthDisableRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthChangeAsync<AuthDisableResponse>(who, new JournalEntry { AuthDisable = request }, cancellationToken);

    public async Task<AuthStatusResponse> AuthStatusAsync(AuthStatusRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        CheckAdmin(UserOf(who)); // an admin request in etcd 3.5
        var response = await ReadAsync(serializable: false, txn => new AuthStatusResponse
        {
            Header = new ResponseHeader { Revision = txn.ReadRevision },
            Enabled = shard.Auth.Enabled,
            AuthRevision = shard.Auth.Revision,
        }, cancellationToken).ConfigureAwait(false);
        Fill(response.Header);
        return response;
    }

    /// <summary>
    /// Checks the password against the applied state, then journals the login with a fresh token;
    /// if the auth state changed in between, checks again (etcd's Authenticate loop).
    /// </summary>
    public async Task<AuthenticateResponse> AuthenticateAsync(AuthenticateRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        await shard.WaitLinearizableAsync(cancellationToken).ConfigureAwait(false);
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
            Ok(error);
            // The costly hash runs outside the lock.
            if (!PasswordHash.Verify(request.Password, stored.Span)) throw new EtcdException(EtcdError.AuthFailed);
            var login = new Protos.Journal.Authenticate { Name = request.Name, Token = NewToken(), CheckedRevision = revision, AtUnixMs = shard.NowUnixMs() };
            // Made as nobody: a login is what gives a user, and a stale token sent along must not refuse it.
            var result = await ProposeEntryAsync("", new JournalEntry { Authenticate = login }, cancellationToken).ConfigureAwait(false);
            if (result.Error == EtcdError.AuthOldRevision && attempt < 5) continue;
            Ok(result.Error);
            var response = (AuthenticateResponse)result.Response!;
            Fill(response.Header);
            return response;
        }
    }

    public Task<AuthUserAddResponse> UserAddAsync(AuthUserAddRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        var entry = request.Clone();
        if (entry.Options?.NoPassword != true) entry.HashedPassword = PasswordHash.Hash(entry.Password, limits.BcryptCost);
        entry.Password = "";
        return AuthChangeAsync<AuthUserAddResponse>(who, new JournalEntry { UserAdd = entry }, cancellationToken);
    }

    public Task<AuthUserDeleteResponse> UserDeleteAsync(AuthUserDeleteRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthChangeAsync<AuthUserDeleteResponse>(who, new JournalEntry { UserDelete = request }, cancellationToken);

    public Task<AuthUserChangePasswordResponse> UserChangePasswordAsync(AuthUserChangePasswordRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        var entry = request.Clone();
        entry.HashedPassword = PasswordHash.Hash(entry.Password, limits.BcryptCost);
        entry.Password = "";
        return AuthChangeAsync<AuthUserChangePasswordResponse>(who, new JournalEntry { UserChangePassword = entry }, cancellationToken);
    }

    public Task<AuthUserGrantRoleResponse> UserGrantRoleAsync(AuthUserGrantRoleRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthChangeAsync<AuthUserGrantRoleResponse>(who, new JournalEntry { UserGrantRole = request }, cancellationToken);

    public Task<AuthUserRevokeRoleResponse> UserRevokeRoleAsync(AuthUserRevokeRoleRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthChangeAsync<AuthUserRevokeRoleResponse>(who, new JournalEntry { UserRevokeRole = request }, cancellationToken);

    public Task<AuthRoleAddResponse> RoleAddAsync(AuthRoleAddRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthChangeAsync<AuthRoleAddResponse>(who, new JournalEntry { RoleAdd = request }, cancellationToken);

    public Task<AuthRoleDeleteResponse> RoleDeleteAsync(AuthRoleDeleteRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthChangeAsync<AuthRoleDeleteResponse>(who, new JournalEntry { RoleDelete = request }, cancellationToken);

    public Task<AuthRoleGrantPermissionResponse> RoleGrantPermissionAsync(AuthRoleGrantPermissionRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthChangeAsync<AuthRoleGrantPermissionResponse>(who, new JournalEntry { RoleGrantPermission = request }, cancellationToken);

    public Task<AuthRoleRevokePermissionResponse> RoleRevokePermissionAsync(AuthRoleRevokePermissionRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthChangeAsync<AuthRoleRevokePermissionResponse>(who, new JournalEntry { RoleRevokePermission = request }, cancellationToken);

    // Users may read themselves and roles they hold; listing and reading others takes an admin.
    public Task<AuthUserGetResponse> UserGetAsync(AuthUserGetRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthReadAsync(who, (auth, user) =>
        {
            if (request.Name != user && auth.CheckAdmin(user) is var denied && denied != EtcdError.None) return (denied, null);
            var found = auth.GetUser(request.Name);
            if (found is null) return (EtcdError.UserNotFound, null);
            var r = new AuthUserGetResponse();
            r.Roles.AddRange(found.Roles);
            return (EtcdError.None, r);
        }, cancellationToken);

    public Task<AuthUserListResponse> UserListAsync(AuthUserListRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthReadAsync(who, (auth, user) =>
        {
            if (auth.CheckAdmin(user) is var denied && denied != EtcdError.None) return (denied, null);
            var r = new AuthUserListResponse();
            foreach (var u in auth.Users) r.Users.Add(u.Name.ToStringUtf8());
            return (EtcdError.None, r);
        }, cancellationToken);

    public Task<AuthRoleGetResponse> RoleGetAsync(AuthRoleGetRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthReadAsync(who, (auth, user) =>
        {
            if (!auth.HasRole(user, request.Role) && auth.CheckAdmin(user) is var denied && denied != EtcdError.None) return (denied, null);
            var permissions = auth.PermissionsOf(request.Role);
            if (permissions is null) return (EtcdError.RoleNotFound, null);
            var r = new AuthRoleGetResponse();
            foreach (var p in permissions) r.Perm.Add(p.Clone());
            return (EtcdError.None, r);
        }, cancellationToken);

    public Task<AuthRoleListResponse> RoleListAsync(AuthRoleListRequest request, CallerIdentity who, CancellationToken cancellationToken) =>
        AuthReadAsync(who, (auth, user) =>
        {
            if (auth.CheckAdmin(user) is var denied && denied != EtcdError.None) return (denied, null);
            var r = new AuthRoleListResponse();
            foreach (var role in auth.Roles) r.Roles.Add(role.Name.ToStringUtf8());
            return (EtcdError.None, r);
        }, cancellationToken);

    // Auth calls are rare, so their headers are set through reflection rather than one method each.
    private async Task<TResponse> AuthChangeAsync<TResponse>(CallerIdentity who, JournalEntry entry, CancellationToken cancellationToken) where TResponse : IMessage
    {
        var response = await ProposeAsync<TResponse>(UserOf(who), entry, cancellationToken).ConfigureAwait(false);
        Fill((ResponseHeader)response.Descriptor.FindFieldByName("header").Accessor.GetValue(response));
        return response;
    }

    private async Task<TResponse> AuthReadAsync<TResponse>(CallerIdentity who, Func<AuthStore, string, (EtcdError, TResponse?)> read, CancellationToken cancellationToken)
        where TResponse : class, IMessage
    {
        string user = UserOf(who);
        var (error, response, revision) = await ReadAsync(serializable: false, txn =>
        {
            var (e, r) = read(shard.Auth, user);
            return (e, r, txn.ReadRevision);
        }, cancellationToken).ConfigureAwait(false);
        Ok(error);
        response!.Descriptor.FindFieldByName("header").Accessor.SetValue(response, Fill(new ResponseHeader { Revision = revision }));
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
