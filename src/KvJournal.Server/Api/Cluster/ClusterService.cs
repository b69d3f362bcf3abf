using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Shards;
using KvJournal.Server.Api.Auth;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;

namespace KvJournal.Server.Api.Cluster;

/// <summary>
/// etcd's Cluster service. Members share a keyspace by reading the same journal, not by raft
/// membership: each member announces itself on the journal when it starts, so every member lists
/// the same members. Membership changes are refused with a clear message.
/// </summary>
[BindServiceMethod(typeof(ClusterService), nameof(BindService))]
public sealed class ClusterService(Shard shard, ServerOptions options) : Etcdserverpb.Cluster.ClusterBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Cluster.ClusterBase? service) =>
        Etcdserverpb.Cluster.BindService(new UnparsableRequests.Binder(binder), service!);

    public override async Task<MemberListResponse> MemberList(MemberListRequest request, ServerCallContext context)
    {
        Caller.Of(context, shard, options).RequireUser(); // etcd 3.5: any user while auth is on
        if (request.Linearizable) await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
        var response = shard.Read(txn =>
        {
            var r = new MemberListResponse { Header = new ResponseHeader { Revision = txn.ReadRevision } };
            foreach (var m in shard.Members.Values) r.Members.Add(new Etcdserverpb.Member { ID = m.MemberId, Name = m.Name, ClientURLs = { m.ClientUrls }, PeerURLs = { m.PeerUrls } });
            return r;
        });
        ResponseHeaders.Fill(response.Header, shard);
        return response;
    }

    public override Task<MemberAddResponse> MemberAdd(MemberAddRequest request, ServerCallContext context) => throw Refused();

    public override Task<MemberRemoveResponse> MemberRemove(MemberRemoveRequest request, ServerCallContext context) => throw Refused();

    public override Task<MemberUpdateResponse> MemberUpdate(MemberUpdateRequest request, ServerCallContext context) => throw Refused();

    public override Task<MemberPromoteResponse> MemberPromote(MemberPromoteRequest request, ServerCallContext context) => throw Refused();

    private static RpcException Refused() => EtcdErrors.Exception(EtcdError.MembershipByJournal);
}
