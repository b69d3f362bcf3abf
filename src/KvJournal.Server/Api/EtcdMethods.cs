using Etcdserverpb;
using Google.Protobuf;
using Grpc.Health.V1;
using KvJournal.Member.Face;
using V3electionpb;
using V3lockpb;

namespace KvJournal.Server.Api;

/// <summary>
/// One unary method of etcd's API: its gRPC service and name, the paths of etcd's JSON gateway
/// that serve it too, and the method of the shard's face behind it. Each wire binds the whole
/// table (<see cref="Grpc.HandBoundGrpc"/>, <see cref="Gateway.GatewayRoutes"/>), so a method is
/// added once and both wires serve it the same way.
/// </summary>
public interface IUnaryMethod
{
    string Service { get; }
    string Name { get; }

    /// <summary>Hands the method with its message types to <paramref name="binder"/> (a wire that binds it).</summary>
    void BindTo(IUnaryMethodBinder binder);
}

/// <summary>A wire that serves unary methods: called once per method, with its message types.</summary>
public interface IUnaryMethodBinder
{
    void Bind<TRequest, TResponse>(UnaryMethod<TRequest, TResponse> method) where TRequest : class, IMessage<TRequest>, new() where TResponse : IMessage;
}

public sealed class UnaryMethod<TRequest, TResponse>(string service, string name, MessageParser<TRequest> parser,
    Func<ShardServer, TRequest, CallerIdentity, CancellationToken, Task<TResponse>> serve, params string[] gatewayPaths) : IUnaryMethod
    where TRequest : class, IMessage<TRequest>, new() where TResponse : IMessage
{
    public string Service { get; } = service;
    public string Name { get; } = name;
    public MessageParser<TRequest> Parser { get; } = parser;
    public Func<ShardServer, TRequest, CallerIdentity, CancellationToken, Task<TResponse>> Serve { get; } = serve;
    public IReadOnlyList<string> GatewayPaths { get; } = gatewayPaths;

    public void BindTo(IUnaryMethodBinder binder) => binder.Bind(this);
}

/// <summary>Every unary method of etcd's API (the streams are bound by each wire on its own).</summary>
public static class EtcdMethods
{
    public static IReadOnlyList<IUnaryMethod> Unary { get; } =
    [
        M("etcdserverpb.KV", "Range", RangeRequest.Parser, static (f, r, who, ct) => f.RangeAsync(r, who, ct), "/v3/kv/range"),
        M("etcdserverpb.KV", "Put", PutRequest.Parser, static (f, r, who, ct) => f.PutAsync(r, who, ct), "/v3/kv/put"),
        M("etcdserverpb.KV", "DeleteRange", DeleteRangeRequest.Parser, static (f, r, who, ct) => f.DeleteRangeAsync(r, who, ct), "/v3/kv/deleterange"),
        M("etcdserverpb.KV", "Txn", TxnRequest.Parser, static (f, r, who, ct) => f.TxnAsync(r, who, ct), "/v3/kv/txn"),
        M("etcdserverpb.KV", "Compact", CompactionRequest.Parser, static (f, r, who, ct) => f.CompactAsync(r, who, ct), "/v3/kv/compaction"),

        M("etcdserverpb.Lease", "LeaseGrant", LeaseGrantRequest.Parser, static (f, r, who, ct) => f.LeaseGrantAsync(r, who, ct), "/v3/lease/grant"),
        M("etcdserverpb.Lease", "LeaseRevoke", LeaseRevokeRequest.Parser, static (f, r, who, ct) => f.LeaseRevokeAsync(r, who, ct), "/v3/lease/revoke", "/v3/kv/lease/revoke"),
        M("etcdserverpb.Lease", "LeaseTimeToLive", LeaseTimeToLiveRequest.Parser, static (f, r, who, ct) => f.LeaseTimeToLiveAsync(r, who, ct), "/v3/lease/timetolive", "/v3/kv/lease/timetolive"),
        M("etcdserverpb.Lease", "LeaseLeases", LeaseLeasesRequest.Parser, static (f, r, who, ct) => f.LeaseLeasesAsync(r, who, ct), "/v3/lease/leases", "/v3/kv/lease/leases"),

        M("etcdserverpb.Cluster", "MemberAdd", MemberAddRequest.Parser, static (_, _, _, _) => Task.FromException<MemberAddResponse>(ShardServer.MembershipChange()), "/v3/cluster/member/add"),
        M("etcdserverpb.Cluster", "MemberRemove", MemberRemoveRequest.Parser, static (_, _, _, _) => Task.FromException<MemberRemoveResponse>(ShardServer.MembershipChange()), "/v3/cluster/member/remove"),
        M("etcdserverpb.Cluster", "MemberUpdate", MemberUpdateRequest.Parser, static (_, _, _, _) => Task.FromException<MemberUpdateResponse>(ShardServer.MembershipChange()), "/v3/cluster/member/update"),
        M("etcdserverpb.Cluster", "MemberList", MemberListRequest.Parser, static (f, r, who, ct) => f.MemberListAsync(r, who, ct), "/v3/cluster/member/list"),
        M("etcdserverpb.Cluster", "MemberPromote", MemberPromoteRequest.Parser, static (_, _, _, _) => Task.FromException<MemberPromoteResponse>(ShardServer.MembershipChange()), "/v3/cluster/member/promote"),

        M("etcdserverpb.Maintenance", "Alarm", AlarmRequest.Parser, static (f, r, who, ct) => f.AlarmAsync(r, who, ct), "/v3/maintenance/alarm"),
        M("etcdserverpb.Maintenance", "Status", StatusRequest.Parser, static (f, r, who, _) => Task.FromResult(f.Status(r, who)), "/v3/maintenance/status"),
        M("etcdserverpb.Maintenance", "Defragment", DefragmentRequest.Parser, static (f, r, who, _) => Task.FromResult(f.Defragment(r, who)), "/v3/maintenance/defragment"),
        M("etcdserverpb.Maintenance", "Hash", HashRequest.Parser, static (f, r, who, ct) => f.HashAsync(r, who, ct), "/v3/maintenance/hash"),
        M("etcdserverpb.Maintenance", "HashKV", HashKVRequest.Parser, static (f, r, who, ct) => f.HashKVAsync(r, who, ct), "/v3/maintenance/hashkv"),
        M("etcdserverpb.Maintenance", "MoveLeader", MoveLeaderRequest.Parser, static (f, r, who, _) => Task.FromResult(f.MoveLeader(r, who)), "/v3/maintenance/transfer-leadership"),
        M("etcdserverpb.Maintenance", "Downgrade", DowngradeRequest.Parser, static (f, r, who, _) => Task.FromResult(f.Downgrade(r, who)), "/v3/maintenance/downgrade"),

        M("etcdserverpb.Auth", "AuthEnable", AuthEnableRequest.Parser, static (f, r, who, ct) => f.AuthEnableAsync(r, who, ct), "/v3/auth/enable"),
        M("etcdserverpb.Auth", "AuthDisable", AuthDisableRequest.Parser, static (f, r, who, ct) => f.AuthDisableAsync(r, who, ct), "/v3/auth/disable"),
        M("etcdserverpb.Auth", "AuthStatus", AuthStatusRequest.Parser, static (f, r, who, ct) => f.AuthStatusAsync(r, who, ct), "/v3/auth/status"),
        M("etcdserverpb.Auth", "Authenticate", AuthenticateRequest.Parser, static (f, r, who, ct) => f.AuthenticateAsync(r, who, ct), "/v3/auth/authenticate"),
        M("etcdserverpb.Auth", "UserAdd", AuthUserAddRequest.Parser, static (f, r, who, ct) => f.UserAddAsync(r, who, ct), "/v3/auth/user/add"),
        M("etcdserverpb.Auth", "UserGet", AuthUserGetRequest.Parser, static (f, r, who, ct) => f.UserGetAsync(r, who, ct), "/v3/auth/user/get"),
        M("etcdserverpb.Auth", "UserList", AuthUserListRequest.Parser, static (f, r, who, ct) => f.UserListAsync(r, who, ct), "/v3/auth/user/list"),
        M("etcdserverpb.Auth", "UserDelete", AuthUserDeleteRequest.Parser, static (f, r, who, ct) => f.UserDeleteAsync(r, who, ct), "/v3/auth/user/delete"),
        M("etcdserverpb.Auth", "UserChangePassword", AuthUserChangePasswordRequest.Parser, static (f, r, who, ct) => f.UserChangePasswordAsync(r, who, ct), "/v3/auth/user/changepw"),
        M("etcdserverpb.Auth", "UserGrantRole", AuthUserGrantRoleRequest.Parser, static (f, r, who, ct) => f.UserGrantRoleAsync(r, who, ct), "/v3/auth/user/grant"),
        M("etcdserverpb.Auth", "UserRevokeRole", AuthUserRevokeRoleRequest.Parser, static (f, r, who, ct) => f.UserRevokeRoleAsync(r, who, ct), "/v3/auth/user/revoke"),
        M("etcdserverpb.Auth", "RoleAdd", AuthRoleAddRequest.Parser, static (f, r, who, ct) => f.RoleAddAsync(r, who, ct), "/v3/auth/role/add"),
        M("etcdserverpb.Auth", "RoleGet", AuthRoleGetRequest.Parser, static (f, r, who, ct) => f.RoleGetAsync(r, who, ct), "/v3/auth/role/get"),
        M("etcdserverpb.Auth", "RoleList", AuthRoleListRequest.Parser, static (f, r, who, ct) => f.RoleListAsync(r, who, ct), "/v3/auth/role/list"),
        M("etcdserverpb.Auth", "RoleDelete", AuthRoleDeleteRequest.Parser, static (f, r, who, ct) => f.RoleDeleteAsync(r, who, ct), "/v3/auth/role/delete"),
        M("etcdserverpb.Auth", "RoleGrantPermission", AuthRoleGrantPermissionRequest.Parser, static (f, r, who, ct) => f.RoleGrantPermissionAsync(r, who, ct), "/v3/auth/role/grant"),
        M("etcdserverpb.Auth", "RoleRevokePermission", AuthRoleRevokePermissionRequest.Parser, static (f, r, who, ct) => f.RoleRevokePermissionAsync(r, who, ct), "/v3/auth/role/revoke"),

        M("v3lockpb.Lock", "Lock", LockRequest.Parser, static (f, r, who, ct) => f.LockAsync(r, who, ct), "/v3/lock/lock"),
        M("v3lockpb.Lock", "Unlock", UnlockRequest.Parser, static (f, r, who, ct) => f.UnlockAsync(r, who, ct), "/v3/lock/unlock"),

        M("v3electionpb.Election", "Campaign", CampaignRequest.Parser, static (f, r, who, ct) => f.CampaignAsync(r, who, ct), "/v3/election/campaign"),
        M("v3electionpb.Election", "Proclaim", ProclaimRequest.Parser, static (f, r, who, ct) => f.ProclaimAsync(r, who, ct), "/v3/election/proclaim"),
        M("v3electionpb.Election", "Leader", LeaderRequest.Parser, static (f, r, who, ct) => f.LeaderAsync(r, who, ct), "/v3/election/leader"),
        M("v3electionpb.Election", "Resign", ResignRequest.Parser, static (f, r, who, ct) => f.ResignAsync(r, who, ct), "/v3/election/resign"),

        // gRPC's health service, which etcd registers beside its own (not on its JSON gateway).
        M("grpc.health.v1.Health", "Check", HealthCheckRequest.Parser, static (f, r, _, _) => Task.FromResult(f.CheckHealth(r))),
    ];

    private static UnaryMethod<TRequest, TResponse> M<TRequest, TResponse>(string service, string name, MessageParser<TRequest> parser,
        Func<ShardServer, TRequest, CallerIdentity, CancellationToken, Task<TResponse>> serve, params string[] gatewayPaths)
        where TRequest : class, IMessage<TRequest>, new() where TResponse : IMessage => new(service, name, parser, serve, gatewayPaths);
}
