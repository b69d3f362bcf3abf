using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Member.Shards;
using KvJournal.Server.Api.Auth;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;
using Mvccpb;
using V3electionpb;

namespace KvJournal.Server.Api.Concurrency;

/// <summary>
/// etcd's v3election service: the election recipe of client/v3/concurrency run in the member.
/// A campaign puts "name/&lt;lease hex&gt;" holding the proposed value; the leader is the oldest key
/// under "name/", and a campaign returns once every key created before its own is gone.
/// </summary>
[BindServiceMethod(typeof(ElectionService), nameof(BindService))]
public sealed class ElectionService(Shard shard, ServerOptions options) : Election.ElectionBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Election.ElectionBase? service) =>
        Election.BindService(new UnparsableRequests.Binder(binder), service!);

    // etcd's concurrency errors reach clients as plain gRPC errors (code Unknown).
    private static RpcException NotLeader() => EtcdErrors.Exception(EtcdError.ElectionNotLeader);

    private static RpcException NoLeader() => EtcdErrors.Exception(EtcdError.ElectionNoLeader);

    private static RpcException MissingLeaderKey() => new(new Status(StatusCode.Unknown, "\"leader\" field must be provided"));

    public override async Task<CampaignResponse> Campaign(CampaignRequest request, ServerCallContext context)
    {
        var recipe = Recipe(context);
        var ct = context.CancellationToken;
        long lease = await recipe.LeaseOrGrantAsync(request.Lease, ct).ConfigureAwait(false);
        var prefix = LeaseKeys.PrefixOf(request.Name);
        var key = LeaseKeys.KeyFor(prefix, lease);
        var txn = await recipe.TxnAsync(LeaseKeys.CreateOrGet(key, request.Value, lease), ct).ConfigureAwait(false);
        long revision = txn.Header.Revision;
        var header = txn.Header;
        if (!txn.Succeeded)
        {
            // Campaigning again with the same lease resumes that campaign, with the new value.
            var existing = txn.Responses[0].ResponseRange.Kvs[0];
            revision = existing.CreateRevision;
            if (!existing.Value.Equals(request.Value)) await ProclaimAsync(recipe, key, revision, lease, request.Value, ct).ConfigureAwait(false);
        }
        try
        {
            await recipe.WaitDeletesAsync(prefix, revision - 1, ct).ConfigureAwait(false);
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

    public override async Task<ProclaimResponse> Proclaim(ProclaimRequest request, ServerCallContext context)
    {
        if (request.Leader is null) throw MissingLeaderKey();
        var header = await ProclaimAsync(Recipe(context), request.Leader.Key, request.Leader.Rev, request.Leader.Lease, request.Value, context.CancellationToken).ConfigureAwait(false);
        return new ProclaimResponse { Header = header };
    }

    public override async Task<ResignResponse> Resign(ResignRequest request, ServerCallContext context)
    {
        if (request.Leader is null) throw MissingLeaderKey();
        var header = await ResignAsync(Recipe(context), request.Leader.Key, request.Leader.Rev, context.CancellationToken).ConfigureAwait(false);
        return new ResignResponse { Header = header };
    }

    public override async Task<LeaderResponse> Leader(LeaderRequest request, ServerCallContext context)
    {
        var recipe = Recipe(context);
        await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
        var (leader, header) = recipe.FirstCreated(LeaseKeys.PrefixOf(request.Name));
        if (leader is null) throw NoLeader();
        return new LeaderResponse { Header = header, Kv = leader };
    }

    /// <summary>
    /// Streams the leader: the current one (or the first to appear), each new value it proclaims,
    /// and its successor once it resigns or its lease ends. States are read after each applied
    /// entry, so values proclaimed within one applied batch arrive as the last of them.
    /// </summary>
    public override async Task Observe(LeaderRequest request, IServerStreamWriter<LeaderResponse> responseStream, ServerCallContext context)
    {
        var recipe = Recipe(context);
        var prefix = LeaseKeys.PrefixOf(request.Name);
        var ct = context.CancellationToken;
        KeyValue? sent = null;
        while (!ct.IsCancellationRequested)
        {
            KeyValue? leader = null;
            ResponseHeader? header = null;
            await recipe.WaitUntilAsync(() =>
            {
                (leader, header) = recipe.FirstCreated(prefix);
                return leader is not null && (sent is null || !leader.Key.Equals(sent.Key) || leader.ModRevision != sent.ModRevision);
            }, ct).ConfigureAwait(false);
            await responseStream.WriteAsync(new LeaderResponse { Header = header, Kv = leader! }, ct).ConfigureAwait(false);
            sent = leader;
        }
    }

    private LeaseKeys Recipe(ServerCallContext context) => new(shard, Caller.Of(context, shard, options));

    // Puts the new value only while the campaign's key is the one created at its revision.
    private static async Task<ResponseHeader> ProclaimAsync(LeaseKeys recipe, ByteString key, long revision, long lease, ByteString value, CancellationToken ct)
    {
        var txn = await recipe.TxnAsync(new TxnRequest
        {
            Compare = { CreatedAt(key, revision) },
            Success = { new RequestOp { RequestPut = new PutRequest { Key = key, Value = value, Lease = lease } } },
        }, ct).ConfigureAwait(false);
        if (!txn.Succeeded) throw NotLeader();
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
