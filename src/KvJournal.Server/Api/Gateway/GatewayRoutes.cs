using System.Diagnostics.CodeAnalysis;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Protos.Wire;
using KvJournal.Server.Api.Auth;
using KvJournal.Server.Api.Cluster;
using KvJournal.Server.Api.Concurrency;
using KvJournal.Server.Api.Kv;
using KvJournal.Server.Api.Lease;
using KvJournal.Server.Api.Maintenance;
using KvJournal.Server.Api.Watch;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using V3electionpb;
using V3lockpb;

namespace KvJournal.Server.Api.Gateway;

/// <summary>
/// etcd's HTTP/JSON gateway on the client port: POST /v3/... with a JSON body, the same paths as
/// etcd's grpc-gateway (its google.api.http annotations), each served by the gRPC service method
/// in-process, so the gateway adds no behaviour of its own. Streams answer one {"result": …} line
/// per message.
/// </summary>
public static class GatewayRoutes
{
    public static void Map(IEndpointRouteBuilder app)
    {
        Unary<KvService, RangeRequest, RangeResponse>(app, RangeRequest.Parser, (s, r, c) => s.Range(r, c), "/v3/kv/range");
        Unary<KvService, PutRequest, PutResponse>(app, PutRequest.Parser, (s, r, c) => s.Put(r, c), "/v3/kv/put");
        Unary<KvService, DeleteRangeRequest, DeleteRangeResponse>(app, DeleteRangeRequest.Parser, (s, r, c) => s.DeleteRange(r, c), "/v3/kv/deleterange");
        Unary<KvService, TxnRequest, TxnResponse>(app, TxnRequest.Parser, (s, r, c) => s.Txn(r, c), "/v3/kv/txn");
        Unary<KvService, CompactionRequest, CompactionResponse>(app, CompactionRequest.Parser, (s, r, c) => s.Compact(r, c), "/v3/kv/compaction");
        // A watch outlives the end of the request body, as etcd's does; the stream ends when the client goes.
        Duplex<WatchService, WatchRequest, WatchResponseFrame>(app, WatchRequest.Parser, (s, r, w, c) => s.Watch(r, w, c), "/v3/watch",
            holdOpen: true, toJson: frame => WatchResponse.Parser.ParseFrom(frame.ToByteArray()));

        Unary<LeaseService, LeaseGrantRequest, LeaseGrantResponse>(app, LeaseGrantRequest.Parser, (s, r, c) => s.LeaseGrant(r, c), "/v3/lease/grant");
        Unary<LeaseService, LeaseRevokeRequest, LeaseRevokeResponse>(app, LeaseRevokeRequest.Parser, (s, r, c) => s.LeaseRevoke(r, c), "/v3/lease/revoke", "/v3/kv/lease/revoke");
        Duplex<LeaseService, LeaseKeepAliveRequest, LeaseKeepAliveResponse>(app, LeaseKeepAliveRequest.Parser, (s, r, w, c) => s.LeaseKeepAlive(r, w, c), "/v3/lease/keepalive",
            holdOpen: false, toJson: m => m);
        Unary<LeaseService, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse>(app, LeaseTimeToLiveRequest.Parser, (s, r, c) => s.LeaseTimeToLive(r, c), "/v3/lease/timetolive", "/v3/kv/lease/timetolive");
        Unary<LeaseService, LeaseLeasesRequest, LeaseLeasesResponse>(app, LeaseLeasesRequest.Parser, (s, r, c) => s.LeaseLeases(r, c), "/v3/lease/leases", "/v3/kv/lease/leases");

        Unary<ClusterService, MemberAddRequest, MemberAddResponse>(app, MemberAddRequest.Parser, (s, r, c) => s.MemberAdd(r, c), "/v3/cluster/member/add");
        Unary<ClusterService, MemberRemoveRequest, MemberRemoveResponse>(app, MemberRemoveRequest.Parser, (s, r, c) => s.MemberRemove(r, c), "/v3/cluster/member/remove");
        Unary<ClusterService, MemberUpdateRequest, MemberUpdateResponse>(app, MemberUpdateRequest.Parser, (s, r, c) => s.MemberUpdate(r, c), "/v3/cluster/member/update");
        Unary<ClusterService, MemberListRequest, MemberListResponse>(app, MemberListRequest.Parser, (s, r, c) => s.MemberList(r, c), "/v3/cluster/member/list");
        Unary<ClusterService, MemberPromoteRequest, MemberPromoteResponse>(app, MemberPromoteRequest.Parser, (s, r, c) => s.MemberPromote(r, c), "/v3/cluster/member/promote");

        Unary<MaintenanceService, AlarmRequest, AlarmResponse>(app, AlarmRequest.Parser, (s, r, c) => s.Alarm(r, c), "/v3/maintenance/alarm");
        Unary<MaintenanceService, StatusRequest, StatusResponse>(app, StatusRequest.Parser, (s, r, c) => s.Status(r, c), "/v3/maintenance/status");
        Unary<MaintenanceService, DefragmentRequest, DefragmentResponse>(app, DefragmentRequest.Parser, (s, r, c) => s.Defragment(r, c), "/v3/maintenance/defragment");
        Unary<MaintenanceService, HashRequest, HashResponse>(app, HashRequest.Parser, (s, r, c) => s.Hash(r, c), "/v3/maintenance/hash");
        Unary<MaintenanceService, HashKVRequest, HashKVResponse>(app, HashKVRequest.Parser, (s, r, c) => s.HashKV(r, c), "/v3/maintenance/hashkv");
        ServerStream<MaintenanceService, SnapshotRequest, SnapshotResponse>(app, SnapshotRequest.Parser, (s, r, w, c) => s.Snapshot(r, w, c), "/v3/maintenance/snapshot");
        Unary<MaintenanceService, MoveLeaderRequest, MoveLeaderResponse>(app, MoveLeaderRequest.Parser, (s, r, c) => s.MoveLeader(r, c), "/v3/maintenance/transfer-leadership");
        Unary<MaintenanceService, DowngradeRequest, DowngradeResponse>(app, DowngradeRequest.Parser, (s, r, c) => s.Downgrade(r, c), "/v3/maintenance/downgrade");

        Unary<AuthService, AuthEnableRequest, AuthEnableResponse>(app, AuthEnableRequest.Parser, (s, r, c) => s.AuthEnable(r, c), "/v3/auth/enable");
        Unary<AuthService, AuthDisableRequest, AuthDisableResponse>(app, AuthDisableRequest.Parser, (s, r, c) => s.AuthDisable(r, c), "/v3/auth/disable");
        Unary<AuthService, AuthStatusRequest, AuthStatusResponse>(app, AuthStatusRequest.Parser, (s, r, c) => s.AuthStatus(r, c), "/v3/auth/status");
        Unary<AuthService, AuthenticateRequest, AuthenticateResponse>(app, AuthenticateRequest.Parser, (s, r, c) => s.Authenticate(r, c), "/v3/auth/authenticate");
        Unary<AuthService, AuthUserAddRequest, AuthUserAddResponse>(app, AuthUserAddRequest.Parser, (s, r, c) => s.UserAdd(r, c), "/v3/auth/user/add");
        Unary<AuthService, AuthUserGetRequest, AuthUserGetResponse>(app, AuthUserGetRequest.Parser, (s, r, c) => s.UserGet(r, c), "/v3/auth/user/get");
        Unary<AuthService, AuthUserListRequest, AuthUserListResponse>(app, AuthUserListRequest.Parser, (s, r, c) => s.UserList(r, c), "/v3/auth/user/list");
        Unary<AuthService, AuthUserDeleteRequest, AuthUserDeleteResponse>(app, AuthUserDeleteRequest.Parser, (s, r, c) => s.UserDelete(r, c), "/v3/auth/user/delete");
        Unary<AuthService, AuthUserChangePasswordRequest, AuthUserChangePasswordResponse>(app, AuthUserChangePasswordRequest.Parser, (s, r, c) => s.UserChangePassword(r, c), "/v3/auth/user/changepw");
        Unary<AuthService, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse>(app, AuthUserGrantRoleRequest.Parser, (s, r, c) => s.UserGrantRole(r, c), "/v3/auth/user/grant");
        Unary<AuthService, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse>(app, AuthUserRevokeRoleRequest.Parser, (s, r, c) => s.UserRevokeRole(r, c), "/v3/auth/user/revoke");
        Unary<AuthService, AuthRoleAddRequest, AuthRoleAddResponse>(app, AuthRoleAddRequest.Parser, (s, r, c) => s.RoleAdd(r, c), "/v3/auth/role/add");
        Unary<AuthService, AuthRoleGetRequest, AuthRoleGetResponse>(app, AuthRoleGetRequest.Parser, (s, r, c) => s.RoleGet(r, c), "/v3/auth/role/get");
        Unary<AuthService, AuthRoleListRequest, AuthRoleListResponse>(app, AuthRoleListRequest.Parser, (s, r, c) => s.RoleList(r, c), "/v3/auth/role/list");
        Unary<AuthService, AuthRoleDeleteRequest, AuthRoleDeleteResponse>(app, AuthRoleDeleteRequest.Parser, (s, r, c) => s.RoleDelete(r, c), "/v3/auth/role/delete");
        Unary<AuthService, AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse>(app, AuthRoleGrantPermissionRequest.Parser, (s, r, c) => s.RoleGrantPermission(r, c), "/v3/auth/role/grant");
        Unary<AuthService, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse>(app, AuthRoleRevokePermissionRequest.Parser, (s, r, c) => s.RoleRevokePermission(r, c), "/v3/auth/role/revoke");

        Unary<LockService, LockRequest, LockResponse>(app, LockRequest.Parser, (s, r, c) => s.Lock(r, c), "/v3/lock/lock");
        Unary<LockService, UnlockRequest, UnlockResponse>(app, UnlockRequest.Parser, (s, r, c) => s.Unlock(r, c), "/v3/lock/unlock");
        Unary<ElectionService, CampaignRequest, CampaignResponse>(app, CampaignRequest.Parser, (s, r, c) => s.Campaign(r, c), "/v3/election/campaign");
        Unary<ElectionService, ProclaimRequest, ProclaimResponse>(app, ProclaimRequest.Parser, (s, r, c) => s.Proclaim(r, c), "/v3/election/proclaim");
        Unary<ElectionService, LeaderRequest, LeaderResponse>(app, LeaderRequest.Parser, (s, r, c) => s.Leader(r, c), "/v3/election/leader");
        ServerStream<ElectionService, LeaderRequest, LeaderResponse>(app, LeaderRequest.Parser, (s, r, w, c) => s.Observe(r, w, c), "/v3/election/observe");
        Unary<ElectionService, ResignRequest, ResignResponse>(app, ResignRequest.Parser, (s, r, c) => s.Resign(r, c), "/v3/election/resign");

        // Anything else under /v3/: grpc-gateway's answers.
        app.Map("/v3/{**rest}", (HttpContext http) => new GatewayCall(http).WriteErrorAsync(http.Request.Method == HttpMethods.Post
            ? new RpcException(new Status(StatusCode.NotFound, "Not Found"))
            : new RpcException(new Status(StatusCode.Unimplemented, "Method Not Allowed"))));
    }

    private static void Unary<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TService, TRequest, TResponse>(IEndpointRouteBuilder app, MessageParser<TRequest> parser,
        Func<TService, TRequest, ServerCallContext, Task<TResponse>> method, params string[] paths)
        where TRequest : IMessage<TRequest>, new() where TResponse : IMessage
    {
        foreach (var path in paths)
        {
            app.MapPost(path, (HttpContext http) => ServeAsync(http, async call =>
            {
                var requests = await call.ReadRequestsAsync(parser).ConfigureAwait(false);
                var response = await method(Service<TService>(http), requests.Count > 0 ? requests[0] : new TRequest(), call).ConfigureAwait(false);
                await call.WriteUnaryAsync(response).ConfigureAwait(false);
            }));
        }
    }

    private static void ServerStream<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TService, TRequest, TResponse>(IEndpointRouteBuilder app, MessageParser<TRequest> parser,
        Func<TService, TRequest, IServerStreamWriter<TResponse>, ServerCallContext, Task> method, string path)
        where TRequest : IMessage<TRequest>, new() where TResponse : IMessage
    {
        app.MapPost(path, (HttpContext http) => ServeAsync(http, async call =>
        {
            var requests = await call.ReadRequestsAsync(parser).ConfigureAwait(false);
            await method(Service<TService>(http), requests.Count > 0 ? requests[0] : new TRequest(), new Writer<TResponse>(call, m => m), call).ConfigureAwait(false);
        }));
    }

    private static void Duplex<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TService, TRequest, TResponse>(IEndpointRouteBuilder app, MessageParser<TRequest> parser,
        Func<TService, IAsyncStreamReader<TRequest>, IServerStreamWriter<TResponse>, ServerCallContext, Task> method, string path,
        bool holdOpen, Func<TResponse, IMessage> toJson)
        where TRequest : IMessage<TRequest>, new()
    {
        app.MapPost(path, (HttpContext http) => ServeAsync(http, async call =>
        {
            var requests = await call.ReadRequestsAsync(parser).ConfigureAwait(false);
            await method(Service<TService>(http), new Reader<TRequest>(requests, holdOpen), new Writer<TResponse>(call, toJson), call).ConfigureAwait(false);
        }));
    }

    private static async Task ServeAsync(HttpContext http, Func<GatewayCall, Task> serve)
    {
        var call = new GatewayCall(http);
        try
        {
            // --listen-metrics-urls serve /metrics and /health only, as etcd's do.
            if (OnMetricsPort(http)) throw new RpcException(new Status(StatusCode.NotFound, "Not Found"));
            await serve(call).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // the client went away
        }
        catch (Exception ex)
        {
            await call.WriteErrorAsync(ex).ConfigureAwait(false);
        }
    }

    private static bool OnMetricsPort(HttpContext http)
    {
        foreach (var url in http.RequestServices.GetRequiredService<Hosting.ServerOptions>().ListenMetricsUrls)
            if (url.Port == http.Connection.LocalPort) return true;
        return false;
    }

    // Services are made per request, as gRPC makes them, with the request's shard injected.
    private static TService Service<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TService>(HttpContext http) => ActivatorUtilities.CreateInstance<TService>(http.RequestServices);

    /// <summary>The request body's messages; a held-open stream then waits for the client to go instead of ending.</summary>
    private sealed class Reader<T>(List<T> requests, bool holdOpen) : IAsyncStreamReader<T>
    {
        private int _next = -1;

        public T Current => requests[_next];

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            if (_next + 1 < requests.Count)
            {
                _next++;
                return true;
            }
            if (holdOpen) await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
            return false;
        }
    }

    private sealed class Writer<T>(GatewayCall call, Func<T, IMessage> toJson) : IServerStreamWriter<T>
    {
        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(T message) => call.WriteStreamedAsync(toJson(message));

        public Task WriteAsync(T message, CancellationToken cancellationToken) => call.WriteStreamedAsync(toJson(message));
    }
}
