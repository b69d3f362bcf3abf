using Authpb;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.Journal;
using KvJournal.Protos.Snapshot;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Mvcc;

namespace KvJournal.Storage.Auth;

/// <summary>
/// Users, roles and permissions, changed only by applying journal entries, so every member holds
/// the same auth state (etcd's authStore, server/auth/store.go). Guarded by the store's lock like
/// the rest of the applied state: changes under the write lock, checks under the read lock.
/// </summary>
public sealed class AuthStore(SimpleTokens tokens)
{
    public const string RootUser = "root";
    public const string RootRole = "root";

    private readonly SortedDictionary<string, User> _users = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, Role> _roles = new(StringComparer.Ordinal);
    // Each user's merged read and write ranges, rebuilt after every change (etcd's rangePermCache).
    private Dictionary<string, (RangePermissions Read, RangePermissions Write)> _permissions = [];

    public SimpleTokens Tokens { get; } = tokens;

    public bool Enabled { get; private set; }

    /// <summary>Bumped by every change (etcd's auth revision; 1 for a fresh store).</summary>
    public ulong Revision { get; private set; } = 1;

    public IEnumerable<User> Users => _users.Values;

    public IEnumerable<Role> Roles => _roles.Values;

    public User? GetUser(string name) => _users.GetValueOrDefault(name);

    // ---- checks (etcd's isOpPermitted / IsAdminPermitted); user "" means no credentials ----

    public EtcdError CheckRead(string user, ByteString key, ByteString rangeEnd) => Check(user, key, rangeEnd, write: false);

    public EtcdError CheckWrite(string user, ByteString key, ByteString rangeEnd) => Check(user, key, rangeEnd, write: true);

    public EtcdError CheckAdmin(string user)
    {
        if (!Enabled) return EtcdError.None;
        if (user.Length == 0) return EtcdError.UserEmpty;
        if (!_users.TryGetValue(user, out var u)) return EtcdError.UserNotFound;
        return HasRootRole(u) ? EtcdError.None : EtcdError.PermissionDenied;
    }

    public bool HasRole(string user, string role) => _users.TryGetValue(user, out var u) && u.Roles.Contains(role);

    private EtcdError Check(string user, ByteString key, ByteString rangeEnd, bool write)
    {
        if (!Enabled) return EtcdError.None;
        if (user.Length == 0) return EtcdError.UserEmpty;
        if (!_users.TryGetValue(user, out var u)) return EtcdError.PermissionDenied;
        if (HasRootRole(u)) return EtcdError.None;
        if (!_permissions.TryGetValue(user, out var p)) return EtcdError.PermissionDenied;
        return (write ? p.Write : p.Read).Covers(key, rangeEnd) ? EtcdError.None : EtcdError.PermissionDenied;
    }

    private static bool HasRootRole(User u) => u.Roles.Contains(RootRole);

    // ---- applying auth entries (the applier has checked admin permission where etcd needs it) ----

    public EtcdError Enable()
    {
        if (Enabled) return EtcdError.None;
        if (!_users.TryGetValue(RootUser, out var root)) return EtcdError.RootUserNotExist;
        if (!HasRootRole(root)) return EtcdError.RootRoleNotExist;
        Enabled = true;
        return EtcdError.None;
    }

    public void Disable()
    {
        if (!Enabled) return;
        Enabled = false;
        Tokens.Clear();
        Changed();
    }

    public ApplyResult Authenticate(Authenticate login, long nowUnixMs)
    {
        if (!Enabled) return ApplyResult.Fail(EtcdError.AuthNotEnabled);
        if (!_users.TryGetValue(login.Name, out var u) || u.Options?.NoPassword == true) return ApplyResult.Fail(EtcdError.AuthFailed);
        // The password was checked against an older state (changed since): the proposer checks again.
        if (login.CheckedRevision != Revision) return ApplyResult.Fail(EtcdError.AuthOldRevision);
        Tokens.Assign(login.Token, login.Name, login.AtUnixMs, nowUnixMs);
        return ApplyResult.Ok(new AuthenticateResponse { Header = new ResponseHeader(), Token = login.Token });
    }

    public EtcdError UserAdd(AuthUserAddRequest r)
    {
        if (r.Name.Length == 0) return EtcdError.UserEmpty;
        if (_users.ContainsKey(r.Name)) return EtcdError.UserAlreadyExists;
        var options = r.Options ?? new UserAddOptions();
        _users[r.Name] = new User
        {
            Name = ByteString.CopyFromUtf8(r.Name),
            Password = options.NoPassword ? ByteString.Empty : ByteString.CopyFromUtf8(r.HashedPassword),
            Options = options,
        };
        Changed();
        return EtcdError.None;
    }

    public EtcdError UserDelete(AuthUserDeleteRequest r)
    {
        if (Enabled && r.Name == RootUser) return EtcdError.InvalidAuthMgmt;
        if (!_users.Remove(r.Name)) return EtcdError.UserNotFound;
        Tokens.InvalidateUser(r.Name);
        Changed();
        return EtcdError.None;
    }

    public EtcdError UserChangePassword(AuthUserChangePasswordRequest r)
    {
        if (!_users.TryGetValue(r.Name, out var u)) return EtcdError.UserNotFound;
        if (u.Options?.NoPassword != true) u.Password = ByteString.CopyFromUtf8(r.HashedPassword);
        Tokens.InvalidateUser(r.Name);
        Changed();
        return EtcdError.None;
    }

    public EtcdError UserGrantRole(AuthUserGrantRoleRequest r)
    {
        if (!_users.TryGetValue(r.User, out var u)) return EtcdError.UserNotFound;
        if (r.Role != RootRole && !_roles.ContainsKey(r.Role)) return EtcdError.RoleNotFound;
        if (u.Roles.Contains(r.Role)) return EtcdError.None; // already granted: no change, no new revision
        var roles = u.Roles.Append(r.Role).Order(StringComparer.Ordinal).ToList();
        u.Roles.Clear();
        u.Roles.AddRange(roles);
        Changed();
        return EtcdError.None;
    }

    public EtcdError UserRevokeRole(AuthUserRevokeRoleRequest r)
    {
        if (Enabled && r.Name == RootUser && r.Role == RootRole) return EtcdError.InvalidAuthMgmt;
        if (!_users.TryGetValue(r.Name, out var u)) return EtcdError.UserNotFound;
        if (!u.Roles.Remove(r.Role)) return EtcdError.RoleNotGranted;
        Changed();
        return EtcdError.None;
    }

    public EtcdError RoleAdd(AuthRoleAddRequest r)
    {
        if (r.Name.Length == 0) return EtcdError.RoleEmpty;
        if (_roles.ContainsKey(r.Name)) return EtcdError.RoleAlreadyExists;
        _roles[r.Name] = new Role { Name = ByteString.CopyFromUtf8(r.Name) };
        Changed();
        return EtcdError.None;
    }

    public EtcdError RoleDelete(AuthRoleDeleteRequest r)
    {
        if (Enabled && r.Role == RootRole) return EtcdError.InvalidAuthMgmt;
        if (!_roles.Remove(r.Role)) return EtcdError.RoleNotFound;
        foreach (var u in _users.Values) u.Roles.Remove(r.Role);
        Changed();
        return EtcdError.None;
    }

    public EtcdError RoleGrantPermission(AuthRoleGrantPermissionRequest r)
    {
        if (r.Perm is null) return EtcdError.PermissionNotGiven;
        if (!IsValidPermissionRange(r.Perm.Key, r.Perm.RangeEnd)) return EtcdError.InvalidAuthMgmt;
        if (!_roles.TryGetValue(r.Name, out var role)) return EtcdError.RoleNotFound;
        var existing = role.KeyPermission.FirstOrDefault(p => p.Key.Equals(r.Perm.Key) && p.RangeEnd.Equals(r.Perm.RangeEnd));
        if (existing is not null)
        {
            existing.PermType = r.Perm.PermType;
        }
        else
        {
            // Kept in key order, as etcd lists them.
            int at = 0;
            while (at < role.KeyPermission.Count && KeyBytes.Compare(role.KeyPermission[at].Key, r.Perm.Key) <= 0) at++;
            role.KeyPermission.Insert(at, new Permission { PermType = r.Perm.PermType, Key = r.Perm.Key, RangeEnd = r.Perm.RangeEnd });
        }
        Changed();
        return EtcdError.None;
    }

    public EtcdError RoleRevokePermission(AuthRoleRevokePermissionRequest r)
    {
        if (!_roles.TryGetValue(r.Role, out var role)) return EtcdError.RoleNotFound;
        int removed = 0;
        for (int i = role.KeyPermission.Count - 1; i >= 0; i--)
        {
            var p = role.KeyPermission[i];
            if (p.Key.Equals(r.Key) && p.RangeEnd.Equals(r.RangeEnd))
            {
                role.KeyPermission.RemoveAt(i);
                removed++;
            }
        }
        if (removed == 0) return EtcdError.PermissionNotGranted;
        Changed();
        return EtcdError.None;
    }

    /// <summary>A role's permissions as granted (etcd 3.5 lists none for root, whose access needs none).</summary>
    public IEnumerable<Permission>? PermissionsOf(string role) => _roles.TryGetValue(role, out var r) ? r.KeyPermission : null;

    // A permission names one key, a range [key, end) with key < end, or everything from key on ("\0").
    private static bool IsValidPermissionRange(ByteString key, ByteString rangeEnd)
    {
        if (key.Length == 0) return false;
        if (rangeEnd.Length == 0) return true;
        if (rangeEnd.Length == 1 && rangeEnd[0] == 0) return true;
        return KeyBytes.Compare(key, rangeEnd) < 0;
    }

    private void Changed()
    {
        Revision++;
        var permissions = new Dictionary<string, (RangePermissions, RangePermissions)>(_users.Count, StringComparer.Ordinal);
        foreach (var (name, user) in _users)
        {
            var granted = new List<Permission>();
            foreach (var roleName in user.Roles)
                if (_roles.TryGetValue(roleName, out var role)) granted.AddRange(role.KeyPermission);
            permissions[name] = RangePermissions.Merge(granted);
        }
        _permissions = permissions;
    }

    // ---- state snapshots ----

    public AuthState ToSnapshot()
    {
        var state = new AuthState { Enabled = Enabled, Revision = Revision };
        state.Users.AddRange(_users.Values.Select(u => u.Clone()));
        state.Roles.AddRange(_roles.Values.Select(r => r.Clone()));
        return state;
    }

    public void Restore(AuthState state)
    {
        _users.Clear();
        _roles.Clear();
        foreach (var u in state.Users) _users[u.Name.ToStringUtf8()] = u;
        foreach (var r in state.Roles) _roles[r.Name.ToStringUtf8()] = r;
        Changed();
        Revision = state.Revision;
        Enabled = state.Enabled;
    }
}
