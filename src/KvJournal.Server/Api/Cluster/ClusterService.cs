using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Shards;
using KvJournal.Server.Hosting;

namespace KvJournal.Server.Api.Cluster;

/// <summary>
/// etcd's Cluster service. Members share a keyspace by reading the same journal, not by raft
/// membership, so the list holds the members known here (this one, until members announce
/// themselves through the journal) and membership changes are refused with a clear message.
/// </summary>
public sealed class ClusterService(Shard shard, ServerOptions options) : Etcdserverpb.Cluster.ClusterBase
{
    private const string MembershipByJournal =
        "etcdserver: KvJournal members join by serving the same journal; raft membership changes are not used";

    public override Task<MemberListResponse> MemberList(MemberListRequest request, ServerCallContext context)
    {
        var self = new Etcdserverpb.Member { ID = shard.MemberId, Name = options.Name };
        foreach (var url in options.AdvertiseClientUrls) self.ClientURLs.Add(url.GetLeftPart(UriPartial.Authority));
        var response = new MemberListResponse { Header = new ResponseHeader { Revision = shard.Read(txn => txn.ReadRevision) }, Members = { self } };
        ResponseHeaders.Fill(response.Header, shard);
        return Task.FromResult(response);
    }

    public override Task<MemberAddResponse> MemberAdd(MemberAddRequest request, ServerCallContext context) => throw Refused();

    public override Task<MemberRemoveResponse> MemberRemove(MemberRemoveRequest request, ServerCallContext context) => throw Refused();

    public override Task<MemberUpdateResponse> MemberUpdate(MemberUpdateRequest request, ServerCallContext context) => throw Refused();

    public override Task<MemberPromoteResponse> MemberPromote(MemberPromoteRequest request, ServerCallContext context) => throw Refused();

    private static RpcException Refused() => new(new Status(StatusCode.FailedPrecondition, MembershipByJournal));
}
