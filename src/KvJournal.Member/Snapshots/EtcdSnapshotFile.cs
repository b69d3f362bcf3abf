using System.Security.Cryptography;
using KvJournal.Member.Shards;
using KvJournal.Storage.EtcdDb;
using KvJournal.Storage.Snapshot;
using Microsoft.Extensions.Logging;

namespace KvJournal.Member.Snapshots;

/// <summary>
/// A shard's state as the file `etcdctl snapshot save` writes: etcd's database (EtcdDbExport, a
/// bbolt file in etcd 3.5's layout) followed by its SHA-256, which `etcdutl snapshot restore`
/// checks. Maintenance.Snapshot sends it and backups keep it. The state is copied under the read
/// lock (a memory copy); the encoding runs on a thread of its own, so writers go on.
/// </summary>
internal static class EtcdSnapshotFile
{
    public const int ChecksumBytes = 32;

    /// <summary>
    /// What was written: the export's summary, the checksum at the end (of the database), the
    /// checksum of the whole file (as sha256sum prints it), and the file's length.
    /// </summary>
    public readonly record struct Written(EtcdDbExport.Summary Summary, byte[] Sha256, byte[] FileSha256, long Bytes);

    public static async Task<Written> WriteAsync(Shard shard, string path, CancellationToken cancellationToken)
    {
        var view = shard.Read(_ => StateSnapshot.Capture(shard.Store, shard.Leases, shard.Applier));
        var written = await Task.Factory.StartNew(() =>
        {
            using var output = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16);
            var summary = EtcdDbExport.Write(view, output);
            // One read of the database for both checksums: the trailer's and the whole file's.
            output.Position = 0;
            using var database = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            using var file = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[1 << 16];
            for (int n; (n = output.Read(buffer)) > 0;)
            {
                database.AppendData(buffer, 0, n);
                file.AppendData(buffer, 0, n);
            }
            byte[] sha = database.GetHashAndReset();
            file.AppendData(sha);
            output.Write(sha);
            output.Flush(flushToDisk: true);
            return new Written(summary, sha, file.GetHashAndReset(), output.Length);
        }, cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
        if (written.Summary.UsersWithoutBcrypt > 0)
        {
            shard.Logs.CreateLogger("KvJournal.Snapshot").LogWarning(
                "etcd snapshot at revision {Revision}: {Users} users have passwords hashed by an older KvJournal (PBKDF2), which etcd cannot check; they log in to etcd only after a new password",
                written.Summary.Revision, written.Summary.UsersWithoutBcrypt);
        }
        return written;
    }
}
