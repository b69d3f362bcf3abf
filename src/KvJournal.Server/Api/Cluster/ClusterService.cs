using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Shards;

namespace KvJournal.Server.Api.Cluster;

/// <summary>
/// etcd's Cluster service. Members share a keyspace by reading the same journal, not by raft
/// membership: each member announces itself on the journal when it starts, so every member lists
/// the same members. Membership changes are refused with a clear message.
/// </summary>
public sealed class ClusterService(Shard shard) : Etcdserverpb.Cluster.ClusterBase
{
    private const string MembershipByJournal =
        "etcdserver: KvJournal members join by serving the same journal; raft membership changes are not used";

    public override async Task<MemberListResponse> MemberList(MemberListRequest request, ServerCallContext context)
    {
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

    private static RpcException Refused() => new(new Status(StatusCode.FailedPrecondition, MembershipByJournal));
}
