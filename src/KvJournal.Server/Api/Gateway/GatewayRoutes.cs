using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using V3electionpb;
using V3lockpb;

namespace KvJournal.Server.Api.Gateway;

/// <summary>
/// etcd's HTTP/JSON gateway on the client port: POST /v3/... with a JSON body, the same paths as
/// etcd's grpc-gateway (its google.api.http annotations), each served by the shard's face, as the
/// gRPC services are, so the gateway adds no behaviour of its own. Streams answer one
/// {"result": …} line per message.
/// </summary>
public static class GatewayRoutes
{
    public static void Map(IEndpointRouteBuilder app)
    {
        Unary(app, RangeRequest.Parser, (f, r, who, ct) => f.RangeAsync(r, who, ct), "/v3/kv/range");
        Unary(app, PutRequest.Parser, (f, r, who, ct) => f.PutAsync(r, who, ct), "/v3/kv/put");
        Unary(app, DeleteRangeRequest.Parser, (f, r, who, ct) => f.DeleteRangeAsync(r, who, ct), "/v3/kv/deleterange");
        Unary(app, TxnRequest.Parser, (f, r, who, ct) => f.TxnAsync(r, who, ct), "/v3/kv/txn");
        Unary(app, CompactionRequest.Parser, (f, r, who, ct) => f.CompactAsync(r, who, ct), "/v3/kv/compaction");

        Unary(app, LeaseGrantRequest.Parser, (f, r, who, ct) => f.LeaseGrantAsync(r, who, ct), "/v3/lease/grant");
        Unary(app, LeaseRevokeRequest.Parser, (f, r, who, ct) => f.LeaseRevokeAsync(r, who, ct), "/v3/lease/revoke", "/v3/kv/lease/revoke");
        Unary(app, LeaseTimeToLiveRequest.Parser, (f, r, who, ct) => f.LeaseTimeToLiveAsync(r, who, ct), "/v3/lease/timetolive", "/v3/kv/lease/timetolive");
        Unary(app, LeaseLeasesRequest.Parser, (f, r, who, ct) => f.LeaseLeasesAsync(r, who, ct), "/v3/lease/leases", "/v3/kv/lease/leases");

        Unary(app, MemberAddRequest.Parser, (_, _, _, _) => Task.FromException<MemberAddResponse>(ShardServer.MembershipChange()), "/v3/cluster/member/add");
        Unary(app, MemberRemoveRequest.Parser, (_, _, _, _) => Task.FromException<MemberRemoveResponse>(ShardServer.MembershipChange()), "/v3/cluster/member/remove");
        Unary(app, MemberUpdateRequest.Parser, (_, _, _, _) => Task.FromException<MemberUpdateResponse>(ShardServer.MembershipChange()), "/v3/cluster/member/update");
        Unary(app, MemberListRequest.Parser, (f, r, who, ct) => f.MemberListAsync(r, who, ct), "/v3/cluster/member/list");
        Unary(app, MemberPromoteRequest.Parser, (_, _, _, _) => Task.FromException<MemberPromoteResponse>(ShardServer.MembershipChange()), "/v3/cluster/member/promote");

        Unary(app, AlarmRequest.Parser, (f, r, who, ct) => f.AlarmAsync(r, who, ct), "/v3/maintenance/alarm");
        Unary(app, StatusRequest.Parser, (f, r, who, _) => Task.FromResult(f.Status(r, who)), "/v3/maintenance/status");
        Unary(app, DefragmentRequest.Parser, (f, r, who, _) => Task.FromResult(f.Defragment(r, who)), "/v3/maintenance/defragment");
        Unary(app, HashRequest.Parser, (f, r, who, ct) => f.HashAsync(r, who, ct), "/v3/maintenance/hash");
        Unary(app, HashKVRequest.Parser, (f, r, who, ct) => f.HashKVAsync(r, who, ct), "/v3/maintenance/hashkv");
        Unary(app, MoveLeaderRequest.Parser, (f, r, who, _) => Task.FromResult(f.MoveLeader(r, who)), "/v3/maintenance/transfer-leadership");
        Unary(app, DowngradeRequest.Parser, (f, r, who, _) => Task.FromResult(f.Downgrade(r, who)), "/v3/maintenance/downgrade");

        Unary(app, AuthEnableRequest.Parser, (f, r, who, ct) => f.AuthEnableAsync(r, who, ct), "/v3/auth/enable");
        Unary(app, AuthDisableRequest.Parser, (f, r, who, ct) => f.AuthDisableAsync(r, who, ct), "/v3/auth/disable");
        Unary(app, AuthStatusRequest.Parser, (f, r, who, ct) => f.AuthStatusAsync(r, who, ct), "/v3/auth/status");
        Unary(app, AuthenticateRequest.Parser, (f, r, who, ct) => f.AuthenticateAsync(r, who, ct), "/v3/auth/authenticate");
        Unary(app, AuthUserAddRequest.Parser, (f, r, who, ct) => f.UserAddAsync(r, who, ct), "/v3/auth/user/add");
        Unary(app, AuthUserGetRequest.Parser, (f, r, who, ct) => f.UserGetAsync(r, who, ct), "/v3/auth/user/get");
        Unary(app, AuthUserListRequest.Parser, (f, r, who, ct) => f.UserListAsync(r, who, ct), "/v3/auth/user/list");
        Unary(app, AuthUserDeleteRequest.Parser, (f, r, who, ct) => f.UserDeleteAsync(r, who, ct), "/v3/auth/user/delete");
        Unary(app, AuthUserChangePasswordRequest.Parser, (f, r, who, ct) => f.UserChangePasswordAsync(r, who, ct), "/v3/auth/user/changepw");
        Unary(app, AuthUserGrantRoleRequest.Parser, (f, r, who, ct) => f.UserGrantRoleAsync(r, who, ct), "/v3/auth/user/grant");
        Unary(app, AuthUserRevokeRoleRequest.Parser, (f, r, who, ct) => f.UserRevokeRoleAsync(r, who, ct), "/v3/auth/user/revoke");
        Unary(app, AuthRoleAddRequest.Parser, (f, r, who, ct) => f.RoleAddAsync(r, who, ct), "/v3/auth/role/add");
        Unary(app, AuthRoleGetRequest.Parser, (f, r, who, ct) => f.RoleGetAsync(r, who, ct), "/v3/auth/role/get");
        Unary(app, AuthRoleListRequest.Parser, (f, r, who, ct) => f.RoleListAsync(r, who, ct), "/v3/auth/role/list");
        Unary(app, AuthRoleDeleteRequest.Parser, (f, r, who, ct) => f.RoleDeleteAsync(r, who, ct), "/v3/auth/role/delete");
        Unary(app, AuthRoleGrantPermissionRequest.Parser, (f, r, who, ct) => f.RoleGrantPermissionAsync(r, who, ct), "/v3/auth/role/grant");
        Unary(app, AuthRoleRevokePermissionRequest.Parser, (f, r, who, ct) => f.RoleRevokePermissionAsync(r, who, ct), "/v3/auth/role/revoke");

        Unary(app, LockRequest.Parser, (f, r, who, ct) => f.LockAsync(r, who, ct), "/v3/lock/lock");
        Unary(app, UnlockRequest.Parser, (f, r, who, ct) => f.UnlockAsync(r, who, ct), "/v3/lock/unlock");

        Unary(app, CampaignRequest.Parser, (f, r, who, ct) => f.CampaignAsync(r, who, ct), "/v3/election/campaign");
        Unary(app, ProclaimRequest.Parser, (f, r, who, ct) => f.ProclaimAsync(r, who, ct), "/v3/election/proclaim");
        Unary(app, LeaderRequest.Parser, (f, r, who, ct) => f.LeaderAsync(r, who, ct), "/v3/election/leader");
        Unary(app, ResignRequest.Parser, (f, r, who, ct) => f.ResignAsync(r, who, ct), "/v3/election/resign");

        // A watch outlives the end of the request body, as etcd's does; the stream ends when the client goes.
        Stream(app, WatchRequest.Parser, "/v3/watch", (f, requests, who, call, ct) =>
            f.WatchAsync(HeldOpen(requests, ct), who, requireLeader: false,
                (frame, _, _) => call.WriteStreamedAsync(WatchResponse.Parser.ParseFrom(frame.ToByteArray())), ct));
        Stream(app, LeaseKeepAliveRequest.Parser, "/v3/lease/keepalive", async (f, requests, who, call, ct) =>
        {
            foreach (var request in requests) await call.WriteStreamedAsync(await f.LeaseKeepAliveAsync(request, who, ct).ConfigureAwait(false)).ConfigureAwait(false);
        });
        Stream(app, SnapshotRequest.Parser, "/v3/maintenance/snapshot", (f, requests, who, call, ct) =>
            f.SnapshotAsync(First(requests), who, (m, _) => call.WriteStreamedAsync(m), ct));
        Stream(app, LeaderRequest.Parser, "/v3/election/observe", (f, requests, who, call, ct) =>
            f.ObserveAsync(First(requests), who, (m, _) => call.WriteStreamedAsync(m), ct));

        // Anything else under /v3/: grpc-gateway's answers.
        app.Map("/v3/{**rest}", (HttpContext http) => new GatewayCall(http).WriteErrorAsync(http.Request.Method == HttpMethods.Post
            ? new RpcException(new Status(StatusCode.NotFound, "Not Found"))
            : new RpcException(new Status(StatusCode.Unimplemented, "Method Not Allowed"))));
    }

    private static void Unary<TRequest, TResponse>(IEndpointRouteBuilder app, MessageParser<TRequest> parser,
        Func<ShardServer, TRequest, CallerIdentity, CancellationToken, Task<TResponse>> method, params string[] paths)
        where TRequest : IMessage<TRequest>, new() where TResponse : IMessage
    {
        foreach (var path in paths)
        {
            Stream(app, parser, path, async (face, requests, who, call, ct) =>
                await call.WriteUnaryAsync(await method(face, First(requests), who, ct).ConfigureAwait(false)).ConfigureAwait(false));
        }
    }

    /// <summary>A route whose body holds the request messages (none, one or several), served by <paramref name="serve"/>.</summary>
    private static void Stream<TRequest>(IEndpointRouteBuilder app, MessageParser<TRequest> parser, string path,
        Func<ShardServer, List<TRequest>, CallerIdentity, GatewayCall, CancellationToken, Task> serve)
        where TRequest : IMessage<TRequest>, new()
    {
        var router = app.ServiceProvider.GetRequiredService<ShardRouter>();
        app.MapPost(path, async (HttpContext http) =>
        {
            var call = new GatewayCall(http);
            try
            {
                // --listen-metrics-urls serve /metrics and /health only, as etcd's do.
                if (OnMetricsPort(http)) throw new RpcException(new Status(StatusCode.NotFound, "Not Found"));
                var face = router.For(http);
                var requests = await call.ReadRequestsAsync(parser).ConfigureAwait(false);
                await serve(face, requests, call.Who(face), call, http.RequestAborted).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
            {
                // the client went away
            }
            catch (Exception ex)
            {
                await call.WriteErrorAsync(ex).ConfigureAwait(false);
            }
        });
    }

    // A unary body with no message is the message with every field at its default.
    private static T First<T>(List<T> requests) where T : new() => requests.Count > 0 ? requests[0] : new T();

    /// <summary>The body's requests, then a wait until the client goes.</summary>
    private static async IAsyncEnumerable<T> HeldOpen<T>(List<T> requests, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        foreach (var request in requests) yield return request;
        await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
    }

    private static bool OnMetricsPort(HttpContext http)
    {
        foreach (var url in http.RequestServices.GetRequiredService<Hosting.ServerOptions>().ListenMetricsUrls)
            if (url.Port == http.Connection.LocalPort) return true;
        return false;
    }
}
