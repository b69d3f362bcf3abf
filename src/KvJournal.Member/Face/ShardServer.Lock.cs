using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Storage.Apply;
using V3lockpb;

namespace KvJournal.Member.Face;

// etcd's v3lock service: the mutex recipe of client/v3/concurrency run in the member. Lock puts
// "name/<lease hex>" with the lease and returns once every key queued before it under "name/" is
// gone; the key lives as long as the lease, and Unlock deletes it.
public sealed partial class ShardServer
{
    public async Task<LockResponse> LockAsync(LockRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        var recipe = new LeaseKeys(this, UserOf(who));
        long lease = await recipe.LeaseOrGrantAsync(request.Lease, cancellationToken).ConfigureAwait(false);
        var prefix = LeaseKeys.PrefixOf(request.Name);
        var key = LeaseKeys.KeyFor(prefix, lease);
        var txn = await recipe.TxnAsync(LeaseKeys.CreateOrGet(key, ByteString.Empty, lease, LeaseKeys.FirstCreatedOp(prefix)), cancellationToken).ConfigureAwait(false);
        long myRevision = txn.Succeeded ? txn.Header.Revision : txn.Responses[0].ResponseRange.Kvs[0].CreateRevision;
        var owner = txn.Responses[1].ResponseRange.Kvs;
        if (owner.Count == 0 || owner[0].CreateRevision == myRevision) return new LockResponse { Header = txn.Header, Key = key };

        try
        {
            await recipe.WaitDeletesAsync(prefix, myRevision - 1, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The caller gave up: leave the queue, as etcd's mutex unlocks on a failed wait.
            await recipe.TxnAsync(DeleteKey(key), CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        var (mine, header) = recipe.Get(key);
        // The lease expired while waiting: the key went with it (etcd's ErrSessionExpired).
        if (mine is null) throw new EtcdException(EtcdError.SessionExpired);
        return new LockResponse { Header = header, Key = key };
    }

    public async Task<UnlockResponse> UnlockAsync(UnlockRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        var txn = await new LeaseKeys(this, UserOf(who)).TxnAsync(DeleteKey(request.Key), cancellationToken).ConfigureAwait(false);
        return new UnlockResponse { Header = txn.Header };
    }

    private static TxnRequest DeleteKey(ByteString key) => new() { Success = { new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = key } } } };
}
