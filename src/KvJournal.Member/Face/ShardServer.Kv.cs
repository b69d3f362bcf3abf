using Etcdserverpb;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Auth;

namespace KvJournal.Member.Face;

// etcd's KV service.
public sealed partial class ShardServer
{
    public async Task<RangeResponse> RangeAsync(RangeRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        Ok(RequestValidator.Range(request));
        CheckRead(UserOf(who), request.Key, request.RangeEnd);
        if (!request.Serializable) await shard.WaitLinearizableAsync(cancellationToken).ConfigureAwait(false);
        var (error, response) = shard.ReadLongRange(txn => (RangeExecutor.Execute(txn, request, out var r), r));
        Ok(error);
        Fill(response!.Header);
        return response;
    }

    public async Task<PutResponse> PutAsync(PutRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        Ok(RequestValidator.Put(request));
        string user = UserOf(who);
        Ok(await shard.CheckQuotaAsync(request, cancellationToken).ConfigureAwait(false));
        var response = await ProposeAsync<PutResponse>(user, new JournalEntry { Put = request }, cancellationToken).ConfigureAwait(false);
        Fill(response.Header);
        return response;
    }

    public async Task<DeleteRangeResponse> DeleteRangeAsync(DeleteRangeRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        Ok(RequestValidator.DeleteRange(request));
        var response = await ProposeAsync<DeleteRangeResponse>(UserOf(who), new JournalEntry { DeleteRange = request }, cancellationToken).ConfigureAwait(false);
        Fill(response.Header);
        return response;
    }

    public async Task<TxnResponse> TxnAsync(TxnRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        Ok(RequestValidator.Txn(request, limits.MaxTxnOps));
        string user = UserOf(who);
        if (!TxnExecutor.IsReadOnly(request)) return await WriteTxnAsync(user, request, cancellationToken).ConfigureAwait(false);
        // A read-only txn needs no journal entry (etcd serves it locally too).
        Check(user, (shard.Leases, request), static (auth, u, s) => AuthChecks.Txn(auth, s.Leases, u, s.request));
        var (error, response) = await ReadAsync(TxnExecutor.IsSerializable(request), txn => (shard.Txns.Txn(txn, request, out var r), r), cancellationToken).ConfigureAwait(false);
        Ok(error);
        Fill(response!.Header);
        return response;
    }

    /// <summary>A txn that writes, after the quota check when it puts; the lock and election recipes write through it too.</summary>
    private async Task<TxnResponse> WriteTxnAsync(string user, TxnRequest request, CancellationToken cancellationToken)
    {
        if (TxnExecutor.HasPut(request)) Ok(await shard.CheckQuotaAsync(request, cancellationToken).ConfigureAwait(false));
        var response = await ProposeAsync<TxnResponse>(user, new JournalEntry { Txn = request }, cancellationToken).ConfigureAwait(false);
        Fill(response.Header);
        return response;
    }

    public async Task<CompactionResponse> CompactAsync(CompactionRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        string user = UserOf(who);
        CheckAdmin(user); // etcd: compaction is an admin's
        // Compaction is applied synchronously, so physical=true needs no extra wait.
        var response = await ProposeAsync<CompactionResponse>(user, new JournalEntry { Compaction = request }, cancellationToken).ConfigureAwait(false);
        Fill(response.Header);
        return response;
    }
}
