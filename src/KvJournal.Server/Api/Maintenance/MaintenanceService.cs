using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Shards;
using KvJournal.Member.Snapshots;
using KvJournal.Server.Api.Auth;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Api.Validation;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;

namespace KvJournal.Server.Api.Maintenance;

/// <summary>
/// etcd's Maintenance service for what etcdctl and kube-apiserver call: status, hashes, alarms,
/// defragment, and clear answers for leadership and downgrade, which a journal-based keyspace
/// does not have.
/// </summary>
[BindServiceMethod(typeof(MaintenanceService), nameof(BindService))]
public sealed class MaintenanceService(Shard shard, ServerOptions options) : Etcdserverpb.Maintenance.MaintenanceBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Maintenance.MaintenanceBase? service) =>
        Etcdserverpb.Maintenance.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<StatusResponse> Status(StatusRequest request, ServerCallContext context)
    {
        Caller.Of(context, shard, options).CheckAdmin(); // etcd 3.5 asks an admin (3.6 any user)
        var (revision, size) = shard.Read(txn => (txn.ReadRevision, shard.DbSize));
        // There is no raft: the indexes are journal positions, which only grow.
        ulong committed = (ulong)Math.Max(0, shard.CommittedPosition);
        ulong applied = (ulong)Math.Max(0, shard.AppliedPosition);
        var response = new StatusResponse
        {
            Header = new ResponseHeader { Revision = revision },
            Version = ServerVersion.Etcd,
            DbSize = size,
            DbSizeInUse = size,
            DbSizeQuota = shard.QuotaBytes,
            Leader = shard.LeaderId,
            RaftIndex = committed,
            RaftAppliedIndex = applied,
            RaftTerm = ResponseHeaders.Term,
            StorageVersion = ServerVersion.Storage,
            Errors = { AlarmErrors(shard) },
            DowngradeInfo = new DowngradeInfo(),
        };
        ResponseHeaders.Fill(response.Header, shard);
        return Task.FromResult(response);
    }

    public override async Task<HashKVResponse> HashKV(HashKVRequest request, ServerCallContext context)
    {
        Caller.Of(context, shard, options).CheckAdmin();
        await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
        var (error, response) = shard.Read<(EtcdError, HashKVResponse?)>(txn =>
        {
            long current = txn.ReadRevision;
            long rev = request.Revision > 0 ? request.Revision : current;
            if (rev > current) return (EtcdError.FutureRevision, null);
            if (rev < txn.CompactRevision) return (EtcdError.Compacted, null);
            return (EtcdError.None, new HashKVResponse
            {
                Header = new ResponseHeader { Revision = current },
                Hash = shard.Store.HashKv(rev),
                CompactRevision = txn.CompactRevision,
                HashRevision = rev,
            });
        });
        if (error != EtcdError.None) EtcdErrors.Throw(error);
        ResponseHeaders.Fill(response!.Header, shard);
        return response;
    }

    public override async Task<HashResponse> Hash(HashRequest request, ServerCallContext context)
    {
        Caller.Of(context, shard, options).CheckAdmin();
        await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
        var response = shard.Read(txn => new HashResponse
        {
            Header = new ResponseHeader { Revision = txn.ReadRevision },
            Hash = shard.Store.HashKv(txn.ReadRevision),
        });
        ResponseHeaders.Fill(response.Header, shard);
        return response;
    }

    /// <summary>
    /// Streams a point-in-time snapshot in KvJournal's format (SnapshotWriter), written to a file in
    /// the data directory first so remaining_bytes is exact. etcdctl snapshot save accepts it: it
    /// requires the 512-byte alignment and the SHA-256 trailer. etcdutl cannot read it (it is not a
    /// bbolt file).
    /// </summary>
    public override async Task Snapshot(SnapshotRequest request, IServerStreamWriter<SnapshotResponse> responseStream, ServerCallContext context)
    {
        Caller.Of(context, shard, options).CheckAdmin();
        string path = Path.Combine(Path.GetFullPath(options.EffectiveDataDir), $"snapshot-{Guid.NewGuid():N}.tmp");
        try
        {
            await using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
                await SnapshotWriter.WriteAsync(shard, file, context.CancellationToken).ConfigureAwait(false);
            await using var read = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);
            long remaining = read.Length;
            var buffer = new byte[1 << 20];
            while (remaining > 0)
            {
                int n = await read.ReadAsync(buffer, context.CancellationToken).ConfigureAwait(false);
                remaining -= n;
                var response = new SnapshotResponse
                {
                    Header = new ResponseHeader { Revision = CurrentRevision() },
                    RemainingBytes = (ulong)remaining,
                    Blob = Google.Protobuf.ByteString.CopyFrom(buffer, 0, n),
                    Version = ServerVersion.Etcd,
                };
                ResponseHeaders.Fill(response.Header, shard);
                await responseStream.WriteAsync(response, context.CancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// GET lists the active alarms; ACTIVATE and DEACTIVATE go through the journal, so every
    /// member agrees on them (etcd's `alarm list` / `alarm disarm`; NOSPACE is raised by quotas).
    /// </summary>
    public override async Task<AlarmResponse> Alarm(AlarmRequest request, ServerCallContext context)
    {
        // etcd: listing alarms needs a user, raising or clearing them an admin.
        var caller = Caller.Of(context, shard, options);
        if (request.Action == AlarmRequest.Types.AlarmAction.Get) caller.RequireUser();
        else caller.CheckAdmin();
        AlarmResponse response;
        if (request.Action == AlarmRequest.Types.AlarmAction.Get)
        {
            await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
            response = shard.Read(txn => new AlarmResponse { Header = new ResponseHeader { Revision = txn.ReadRevision }, Alarms = { shard.Alarms.Select(a => a.Clone()) } });
        }
        else
        {
            if (RequestValidator.Alarm(request) is var invalid and not EtcdError.None) EtcdErrors.Throw(invalid);
            var result = await shard.ProposeAsync(new KvJournal.Protos.Journal.JournalEntry { Alarm = request }, context.CancellationToken).ConfigureAwait(false);
            if (result.Error != EtcdError.None) EtcdErrors.Throw(result.Error);
            response = (AlarmResponse)result.Response!;
        }
        ResponseHeaders.Fill(response.Header, shard);
        return response;
    }

    /// <summary>The keyspace lives in memory and compaction frees what it drops, so there is nothing to rewrite.</summary>
    public override Task<DefragmentResponse> Defragment(DefragmentRequest request, ServerCallContext context)
    {
        Caller.Of(context, shard, options).CheckAdmin();
        var response = new DefragmentResponse { Header = new ResponseHeader { Revision = CurrentRevision() } };
        ResponseHeaders.Fill(response.Header, shard);
        return Task.FromResult(response);
    }

    /// <summary>Every member serves writes, so each reports itself as leader; moving leadership to itself is a no-op.</summary>
    public override Task<MoveLeaderResponse> MoveLeader(MoveLeaderRequest request, ServerCallContext context)
    {
        Caller.Of(context, shard, options).CheckAdmin();
        if (request.TargetID != shard.MemberId)
            EtcdErrors.Throw(EtcdError.BadLeaderTransferee);
        var response = new MoveLeaderResponse { Header = new ResponseHeader { Revision = CurrentRevision() } };
        ResponseHeaders.Fill(response.Header, shard);
        return Task.FromResult(response);
    }

    /// <summary>No downgrade can be in progress: etcd's answers for that state.</summary>
    public override Task<DowngradeResponse> Downgrade(DowngradeRequest request, ServerCallContext context)
    {
        Caller.Of(context, shard, options).CheckAdmin();
        throw new RpcException(request.Action == DowngradeRequest.Types.DowngradeAction.Cancel
            ? EtcdErrors.ToStatus(EtcdError.NoInflightDowngrade)
            : EtcdErrors.ToStatus(EtcdError.InvalidDowngradeTarget));
    }

    private long CurrentRevision() => shard.Read(txn => txn.ReadRevision);

    /// <summary>Status.errors as etcd words them, one per active alarm.</summary>
    internal static List<string> AlarmErrors(Shard shard) =>
        shard.Read(_ => shard.Alarms.Select(a => $"memberID:{a.MemberID} alarm:{a.Alarm.ToString().ToUpperInvariant()} ").ToList());
}
