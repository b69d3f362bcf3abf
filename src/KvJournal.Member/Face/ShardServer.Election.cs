using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Storage.Apply;
using Mvccpb;
using V3electionpb;

namespace KvJournal.Member.Face;

// etcd's v3election service: the election recipe of client/v3/concurrency run in the member. A
// campaign puts "name/<lease hex>" holding the proposed value; the leader is the oldest key under
// "name/", and a campaign returns once every key created before its own is gone.
public sealed partial class ShardServer
{
    public async Task<CampaignResponse> CampaignAsync(CampaignRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        var recipe = new LeaseKeys(this, UserOf(who));
        long lease = await recipe.LeaseOrGrantAsync(request.Lease, cancellationToken).ConfigureAwait(false);
        var prefix = LeaseKeys.PrefixOf(request.Name);
        var key = LeaseKeys.KeyFor(prefix, lease);
        var txn = await recipe.TxnAsync(LeaseKeys.CreateOrGet(key, request.Value, lease), cancellationToken).ConfigureAwait(false);
        long revision = txn.Header.Revision;
        var header = txn.Header;
        if (!txn.Succeeded)
        {
            // Campaigning again with the same lease resumes that campaign, with the new value.
            var existing = txn.Responses[0].ResponseRange.Kvs[0];
            revision = existing.CreateRevision;
            if (!existing.Value.Equals(request.Value)) await ProclaimAsync(recipe, key, revision, lease, request.Value, cancellationToken).ConfigureAwait(false);
        }
        try
        {
            await recipe.WaitDeletesAsync(prefix, revision - 1, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            await ResignAsync(recipe, key, revision, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        return new CampaignResponse
        {
            Header = header,
            Leader = new LeaderKey { Name = request.Name, Key = key, Rev = revision, Lease = lease },
        };
    }

    public async Task<ProclaimResponse> ProclaimAsync(ProclaimRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        if (request.Leader is null) throw new EtcdException(EtcdError.LeaderKeyMissing);
        var header = await ProclaimAsync(new LeaseKeys(this, UserOf(who)), request.Leader.Key, request.Leader.Rev, request.Leader.Lease, request.Value, cancellationToken).ConfigureAwait(false);
        return new ProclaimResponse { Header = header };
    }

    public async Task<ResignResponse> ResignAsync(ResignRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        if (request.Leader is null) throw new EtcdException(EtcdError.LeaderKeyMissing);
        var header = await ResignAsync(new LeaseKeys(this, UserOf(who)), request.Leader.Key, request.Leader.Rev, cancellationToken).ConfigureAwait(false);
        return new ResignResponse { Header = header };
    }

    public async Task<LeaderResponse> LeaderAsync(LeaderRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        var recipe = new LeaseKeys(this, UserOf(who));
        await shard.WaitLinearizableAsync(cancellationToken).ConfigureAwait(false);
        var (leader, header) = recipe.FirstCreated(LeaseKeys.PrefixOf(request.Name));
        if (leader is null) throw new EtcdException(EtcdError.ElectionNoLeader);
        return new LeaderResponse { Header = header, Kv = leader };
    }

    /// <summary>
    /// Streams the leader: the current one (or the first to appear), each new value it proclaims,
    /// and its successor once it resigns or its lease ends. States are read after each applied
    /// entry, so values proclaimed within one applied batch arrive as the last of them.
    /// </summary>
    public async Task ObserveAsync(LeaderRequest request, CallerIdentity who, Func<LeaderResponse, CancellationToken, Task> send, CancellationToken cancellationToken)
    {
        var recipe = new LeaseKeys(this, UserOf(who));
        var prefix = LeaseKeys.PrefixOf(request.Name);
        KeyValue? sent = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            KeyValue? leader = null;
            ResponseHeader? header = null;
            await recipe.WaitUntilAsync(() =>
            {
                (leader, header) = recipe.FirstCreated(prefix);
                return leader is not null && (sent is null || !leader.Key.Equals(sent.Key) || leader.ModRevision != sent.ModRevision);
            }, cancellationToken).ConfigureAwait(false);
            await send(new LeaderResponse { Header = header, Kv = leader! }, cancellationToken).ConfigureAwait(false);
            sent = leader;
        }
    }

    // Puts the new value only while the campaign's key is the one created at its revision.
    private static async Task<ResponseHeader> ProclaimAsync(LeaseKeys recipe, ByteString key, long revision, long lease, ByteString value, CancellationToken ct)
    {
        var txn = await recipe.TxnAsync(new TxnRequest
        {
            Compare = { CreatedAt(key, revision) },
            Success = { new RequestOp { RequestPut = new PutRequest { Key = key, Value = value, Lease = lease } } },
        }, ct).ConfigureAwait(false);
        if (!txn.Succeeded) throw new EtcdException(EtcdError.ElectionNotLeader);
        return txn.Header;
    }

    private static async Task<ResponseHeader> ResignAsync(LeaseKeys recipe, ByteString key, long revision, CancellationToken ct)
    {
        var txn = await recipe.TxnAsync(new TxnRequest
        {
            Compare = { CreatedAt(key, revision) },
            Success = { new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = key } } },
        }, ct).ConfigureAwait(false);
        return txn.Header;
    }

    private static Compare CreatedAt(ByteString key, long revision) => new()
    {
        Key = key,
        Target = Compare.Types.CompareTarget.Create,
        Result = Compare.Types.CompareResult.Equal,
        CreateRevision = revision,
    };
}
