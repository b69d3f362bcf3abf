using Etcdserverpb;
using KvJournal.Storage.Apply;

namespace KvJournal.Member.Face;

// etcd's Cluster service. Members share a keyspace by reading the same journal, not by raft
// membership: each member announces itself on the journal when it starts, so every member lists
// the same members. Membership changes are refused with a clear message.
public sealed partial class ShardServer
{
    public async Task<MemberListResponse> MemberListAsync(MemberListRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        RequireUser(UserOf(who)); // etcd 3.5: any user while auth is on
        var response = await ReadAsync(serializable: !request.Linearizable, txn =>
        {
            var r = new MemberListResponse { Header = new ResponseHeader { Revision = txn.ReadRevision } };
            foreach (var m in shard.Members.Values) r.Members.Add(new Etcdserverpb.Member { ID = m.MemberId, Name = m.Name, ClientURLs = { m.ClientUrls }, PeerURLs = { m.PeerUrls } });
            return r;
        }, cancellationToken).ConfigureAwait(false);
        Fill(response.Header);
        return response;
    }

    /// <summary>MemberAdd, MemberRemove, MemberUpdate and MemberPromote: members join by serving the same journal.</summary>
    public static EtcdException MembershipChange() => new(EtcdError.MembershipByJournal);
}
