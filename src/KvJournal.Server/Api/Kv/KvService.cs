using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Shards;
using KvJournal.Protos.Journal;
using KvJournal.Server.Api.Auth;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Api.Validation;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Auth;

namespace KvJournal.Server.Api.Kv;

/// <summary>
/// etcd's KV service. Each RPC validates, reads or proposes through the shard, maps errors
/// through <see cref="EtcdErrors"/> and fills the header; nothing else lives here.
/// </summary>
[BindServiceMethod(typeof(KvService), nameof(BindService))]
public sealed class KvService(Shard shard, ServerOptions options) : KV.KVBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, KV.KVBase? service) =>
        KV.BindService(new UnparsableRequests.Binder(binder), service!);

    public override async Task<RangeResponse> Range(RangeRequest request, ServerCallContext context)
    {
        Check(RequestValidator.Range(request));
        Caller.Of(context, shard, options).CheckRead(request.Key, request.RangeEnd);
        if (!request.Serializable) await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
        var (error, response) = shard.ReadLongRange(txn => (RangeExecutor.Execute(txn, request, out var r), r));
        Check(error);
        ResponseHeaders.Fill(response!.Header, shard);
        return response;
    }

    public override async Task<PutResponse> Put(PutRequest request, ServerCallContext context)
    {
        Check(RequestValidator.Put(request));
        Check(await shard.CheckQuotaAsync(request, context.CancellationToken).ConfigureAwait(false));
        var response = await Propose<PutResponse>(new JournalEntry { Put = request }, context).ConfigureAwait(false);
        ResponseHeaders.Fill(response.Header, shard);
        return response;
    }

    public override async Task<DeleteRangeResponse> DeleteRange(DeleteRangeRequest request, ServerCallContext context)
    {
        Check(RequestValidator.DeleteRange(request));
        var response = await Propose<DeleteRangeResponse>(new JournalEntry { DeleteRange = request }, context).ConfigureAwait(false);
        ResponseHeaders.Fill(response.Header, shard);
        return response;
    }

    public override async Task<TxnResponse> Txn(TxnRequest request, ServerCallContext context)
    {
        Check(RequestValidator.Txn(request, options.MaxTxnOps));
        TxnResponse response;
        if (!TxnExecutor.IsReadOnly(request))
        {
            response = await ProposeWriteTxnAsync(shard, Caller.Of(context, shard, options), request, context.CancellationToken).ConfigureAwait(false);
        }
        else
        {
            // A read-only txn needs no journal entry (etcd serves it locally too).
            var caller = Caller.Of(context, shard, options);
            caller.Check((shard.Leases, request), static (auth, user, s) => AuthChecks.Txn(auth, s.Leases, user, s.request));
            if (!TxnExecutor.IsSerializable(request)) await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
            var (error, read) = shard.Read(txn => (shard.Txns.Txn(txn, request, out var r), r));
            Check(error);
            response = read!;
        }
        ResponseHeaders.Fill(response.Header, shard);
        return response;
    }

    public override async Task<CompactionResponse> Compact(CompactionRequest request, ServerCallContext context)
    {
        Caller.Of(context, shard, options).CheckAdmin(); // etcd: compaction is an admin's
        // Compaction is applied synchronously, so physical=true needs no extra wait.
        var response = await Propose<CompactionResponse>(new JournalEntry { Compaction = request }, context).ConfigureAwait(false);
        ResponseHeaders.Fill(response.Header, shard);
        return response;
    }

    /// <summary>
    /// Proposes a txn that writes, as <paramref name="caller"/>, after the quota check when it puts.
    /// The lock and election services run their recipes' txns through it too.
    /// </summary>
    internal static async Task<TxnResponse> ProposeWriteTxnAsync(Shard shard, Caller caller, TxnRequest request, CancellationToken cancellationToken)
    {
        if (TxnExecutor.HasPut(request)) Check(await shard.CheckQuotaAsync(request, cancellationToken).ConfigureAwait(false));
        return await caller.ProposeAsync<TxnResponse>(new JournalEntry { Txn = request }, cancellationToken).ConfigureAwait(false);
    }

    private Task<TResponse> Propose<TResponse>(JournalEntry entry, ServerCallContext context) =>
        Caller.Of(context, shard, options).ProposeAsync<TResponse>(entry, context.CancellationToken);

    private static void Check(EtcdError error)
    {
        if (error != EtcdError.None) EtcdErrors.Throw(error);
    }
}
