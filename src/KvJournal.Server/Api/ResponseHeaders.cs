using Etcdserverpb;
using KvJournal.Member.Shards;

namespace KvJournal.Server.Api;

/// <summary>
/// Fills the member-level fields of a response header as etcd does (cluster and member id, term);
/// the revision was set where the request was applied or read.
/// </summary>
public static class ResponseHeaders
{
    /// <summary>KvJournal has no raft; the term is the journal epoch, 1 until epochs exist.</summary>
    public const ulong Term = 1;

    public static ResponseHeader Fill(ResponseHeader? header, Shard shard)
    {
        header ??= new ResponseHeader();
        header.ClusterId = shard.ClusterId;
        header.MemberId = shard.MemberId;
        header.RaftTerm = Term;
        return header;
    }
}
