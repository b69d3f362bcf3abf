using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Member.Shards;
using KvJournal.Server.Api.Auth;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;
using V3lockpb;

namespace KvJournal.Server.Api.Concurrency;

/// <summary>
/// etcd's v3lock service: the mutex recipe of client/v3/concurrency run in the member. Lock puts
/// "name/&lt;lease hex&gt;" with the lease and returns once every key queued before it under
/// "name/" is gone; the key lives as long as the lease, and Unlock deletes it.
/// </summary>
[BindServiceMethod(typeof(LockService), nameof(BindService))]
public sealed class LockService(Shard shard, ServerOptions options) : V3lockpb.Lock.LockBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, V3lockpb.Lock.LockBase? service) =>
        V3lockpb.Lock.BindService(new UnparsableRequests.Binder(binder), service!);

    public override async Task<LockResponse> Lock(LockRequest request, ServerCallContext context)
    {
        var recipe = new LeaseKeys(shard, Caller.Of(context, shard, options));
        var ct = context.CancellationToken;
        long lease = await recipe.LeaseOrGrantAsync(request.Lease, ct).ConfigureAwait(false);
        var prefix = LeaseKeys.PrefixOf(request.Name);
        var key = LeaseKeys.KeyFor(prefix, lease);
        var txn = await recipe.TxnAsync(LeaseKeys.CreateOrGet(key, ByteString.Empty, lease, LeaseKeys.FirstCreatedOp(prefix)), ct).ConfigureAwait(false);
        long myRevision = txn.Succeeded ? txn.Header.Revision : txn.Responses[0].ResponseRange.Kvs[0].CreateRevision;
        var owner = txn.Responses[1].ResponseRange.Kvs;
        if (owner.Count == 0 || owner[0].CreateRevision == myRevision) return new LockResponse { Header = txn.Header, Key = key };

        try
        {
            await recipe.WaitDeletesAsync(prefix, myRevision - 1, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The caller gave up: leave the queue, as etcd's mutex unlocks on a failed wait.
            await recipe.TxnAsync(new TxnRequest { Success = { new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = key } } } }, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        var (mine, header) = recipe.Get(key);
        // The lease expired while waiting: the key went with it (etcd's ErrSessionExpired).
        if (mine is null) throw new RpcException(new Status(StatusCode.Unknown, "mutex: session is expired"));
        return new LockResponse { Header = header, Key = key };
    }

    public override async Task<UnlockResponse> Unlock(UnlockRequest request, ServerCallContext context)
    {
        var recipe = new LeaseKeys(shard, Caller.Of(context, shard, options));
        var txn = await recipe.TxnAsync(new TxnRequest { Success = { new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = request.Key } } } }, context.CancellationToken).ConfigureAwait(false);
        return new UnlockResponse { Header = txn.Header };
    }
}
