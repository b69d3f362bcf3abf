using Etcdserverpb;
using KvJournal.Member.Snapshots;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;

namespace KvJournal.Member.Face;

// etcd's Maintenance service for what etcdctl and kube-apiserver call: status, hashes, alarms,
// defragment, snapshot, and clear answers for leadership and downgrade, which a journal-based
// keyspace does not have.
public sealed partial class ShardServer
{
    public StatusResponse Status(StatusRequest request, CallerIdentity who)
    {
        CheckAdmin(UserOf(who)); // etcd 3.5 asks an admin (3.6 any user)
        var (revision, size, errors) = shard.Read(txn => (txn.ReadRevision, shard.DbSize, AlarmErrors()));
        // There is no raft: the indexes are journal positions, which only grow.
        ulong committed = (ulong)Math.Max(0, shard.CommittedPosition);
        ulong applied = (ulong)Math.Max(0, shard.AppliedPosition);
        return new StatusResponse
        {
            Header = Fill(new ResponseHeader { Revision = revision }),
            Version = ServerVersion.Etcd,
            DbSize = size,
            DbSizeInUse = size,
            DbSizeQuota = shard.QuotaBytes,
            Leader = shard.LeaderId,
            RaftIndex = committed,
            RaftAppliedIndex = applied,
            RaftTerm = Term,
            StorageVersion = ServerVersion.Storage,
            Errors = { errors },
            DowngradeInfo = new DowngradeInfo(),
        };
    }

    public async Task<HashKVResponse> HashKVAsync(HashKVRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        CheckAdmin(UserOf(who));
        var (error, response) = await ReadAsync<(EtcdError, HashKVResponse?)>(serializable: false, txn =>
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
        }, cancellationToken).ConfigureAwait(false);
        Ok(error);
        Fill(response!.Header);
        return response;
    }

    public async Task<HashResponse> HashAsync(HashRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        CheckAdmin(UserOf(who));
        var response = await ReadAsync(serializable: false, txn => new HashResponse
        {
            Header = new ResponseHeader { Revision = txn.ReadRevision },
            Hash = shard.Store.HashKv(txn.ReadRevision),
        }, cancellationToken).ConfigureAwait(false);
        Fill(response.Header);
        return response;
    }

    /// <summary>
    /// Sends a point-in-time copy of the keyspace as etcd's own snapshot (EtcdSnapshotFile: etcd's
    /// database, every retained revision kept), in 1 MiB pieces, then its SHA-256 as the last
    /// message, as etcd does: `etcdctl snapshot save` writes it, and `etcdutl snapshot restore` (or
    /// `kvjournal snapshot restore`) makes a data dir from it.
    /// </summary>
    public async Task SnapshotAsync(SnapshotRequest request, CallerIdentity who, Func<SnapshotResponse, CancellationToken, Task> send, CancellationToken cancellationToken)
    {
        CheckAdmin(UserOf(who));
        string path = Path.Combine(Path.GetFullPath(limits.ScratchDir), $"snapshot-{Guid.NewGuid():N}.tmp");
        try
        {
            var written = await EtcdSnapshotFile.WriteAsync(shard, path, cancellationToken).ConfigureAwait(false);
            var read = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);
            await using var closeRead = read.ConfigureAwait(false);
            long remaining = written.Bytes - EtcdSnapshotFile.ChecksumBytes;
            var buffer = new byte[1 << 20];
            var header = Fill(new ResponseHeader { Revision = written.Summary.Revision });
            while (remaining > 0)
            {
                int n = await read.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, remaining)), cancellationToken).ConfigureAwait(false);
                if (n == 0) throw new EndOfStreamException($"snapshot file {path} ended early");
                remaining -= n;
                await send(new SnapshotResponse { Header = header, RemainingBytes = (ulong)remaining, Blob = Google.Protobuf.ByteString.CopyFrom(buffer, 0, n), Version = ServerVersion.Etcd }, cancellationToken).ConfigureAwait(false);
            }
            await send(new SnapshotResponse { Header = header, Blob = Google.Protobuf.ByteString.CopyFrom(written.Sha256), Version = ServerVersion.Etcd }, cancellationToken).ConfigureAwait(false);
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
    public async Task<AlarmResponse> AlarmAsync(AlarmRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        // etcd: listing alarms needs a user, raising or clearing them an admin.
        string user = UserOf(who);
        AlarmResponse response;
        if (request.Action == AlarmRequest.Types.AlarmAction.Get)
        {
            RequireUser(user);
            response = await ReadAsync(serializable: false, txn => new AlarmResponse { Header = new ResponseHeader { Revision = txn.ReadRevision }, Alarms = { shard.Alarms.Select(a => a.Clone()) } }, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            CheckAdmin(user);
            Ok(RequestValidator.Alarm(request));
            response = await ProposeAsync<AlarmResponse>(user, new JournalEntry { Alarm = request }, cancellationToken).ConfigureAwait(false);
        }
        Fill(response.Header);
        return response;
    }

    /// <summary>The keyspace lives in memory and compaction frees what it drops, so there is nothing to rewrite.</summary>
    public DefragmentResponse Defragment(DefragmentRequest request, CallerIdentity who)
    {
        CheckAdmin(UserOf(who));
        return new DefragmentResponse { Header = Fill(new ResponseHeader { Revision = CurrentRevision() }) };
    }

    /// <summary>Every member serves writes, so each reports itself as leader; moving leadership to itself is a no-op.</summary>
    public MoveLeaderResponse MoveLeader(MoveLeaderRequest request, CallerIdentity who)
    {
        CheckAdmin(UserOf(who));
        if (request.TargetID != shard.MemberId) throw new EtcdException(EtcdError.BadLeaderTransferee);
        return new MoveLeaderResponse { Header = Fill(new ResponseHeader { Revision = CurrentRevision() }) };
    }

    /// <summary>No downgrade can be in progress: etcd's answers for that state.</summary>
    public DowngradeResponse Downgrade(DowngradeRequest request, CallerIdentity who)
    {
        CheckAdmin(UserOf(who));
        throw new EtcdException(request.Action == DowngradeRequest.Types.DowngradeAction.Cancel ? EtcdError.NoInflightDowngrade : EtcdError.InvalidDowngradeTarget);
    }

    /// <summary>Status.errors as etcd words them, one per active alarm (read under the store's lock).</summary>
    private List<string> AlarmErrors() =>
        shard.Alarms.Select(a => $"memberID:{a.MemberID} alarm:{a.Alarm.ToString().ToUpperInvariant()} ").ToList();
}
