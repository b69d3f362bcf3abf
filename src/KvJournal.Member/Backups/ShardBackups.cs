using System.Globalization;
using KvJournal.Member.Logging;
using KvJournal.Member.Shards;
using KvJournal.Member.Snapshots;
using Microsoft.Extensions.Logging;

namespace KvJournal.Member.Backups;

/// <summary>Where and how often backups go: a directory, the time between them, how many to keep per shard.</summary>
public sealed record BackupOptions(string Directory, TimeSpan Interval, int Retention);

/// <summary>The latest backup of a shard, for /metrics (zero before the first).</summary>
public sealed class BackupStatus
{
    public long LastSuccessUnixSeconds { get; internal set; }
    public double LastDurationSeconds { get; internal set; }
    public long LastSizeBytes { get; internal set; }
    public long LastRevision { get; internal set; }
    public long Failures { get; internal set; }
}

/// <summary>
/// Point-in-time backups of one shard, written by the member reported as leader every interval:
/// etcd's snapshot file (what `etcdctl snapshot save` writes, so `etcdutl snapshot restore` and
/// `kvjournal snapshot restore` take it), named SHARD-REVISION-TIME.db with a `sha256sum -c` side
/// file. Each is written under a temporary name, flushed and renamed into place, so a crash never
/// leaves a partial backup under a backup's name; beyond the retention the oldest go. A failed
/// backup is logged, counted and tried again within 30 s; it never holds writers (they wait only
/// for the copy of the state, as for a state snapshot).
/// </summary>
public sealed class ShardBackups(Shard shard, BackupOptions options, BackupStatus status)
{
    private static readonly TimeSpan Check = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan RetryAfter = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan SlowBackup = TimeSpan.FromSeconds(30);
    private readonly ILogger _logger = shard.Logs.CreateLogger("KvJournal.Backup");
    private readonly DutyFailures _failures = new(shard.Logs.CreateLogger("KvJournal.Backup"), $"backup of shard {shard.Name}", shard.Time);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(options.Directory);
        var next = shard.Time.GetUtcNow();
        long lastRevision = -1;
        using var timer = new PeriodicTimer(Check, shard.Time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                var now = shard.Time.GetUtcNow();
                if (now < next || shard.LeaderId != shard.MemberId || !shard.JournalReachable) continue;
                // Nothing written since the last backup: it still holds this state.
                if (shard.Read(txn => txn.ReadRevision) == lastRevision)
                {
                    next = now + options.Interval;
                    continue;
                }
                try
                {
                    lastRevision = await BackUpAsync(cancellationToken).ConfigureAwait(false);
                    _failures.Succeeded();
                    next = now + options.Interval;
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    status.Failures++;
                    _failures.Failed(ex);
                    next = now + (options.Interval < RetryAfter ? options.Interval : RetryAfter);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
    }

    /// <summary>Writes one backup now and prunes the oldest; returns the revision it holds.</summary>
    public async Task<long> BackUpAsync(CancellationToken cancellationToken)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string partial = Path.Combine(options.Directory, $".{shard.Name}-{Guid.NewGuid():N}.partial");
        try
        {
            var written = await EtcdSnapshotFile.WriteAsync(shard, partial, cancellationToken).ConfigureAwait(false);
            long revision = written.Summary.Revision;
            string name = $"{shard.Name}-{revision.ToString("D12", CultureInfo.InvariantCulture)}-{shard.Time.GetUtcNow():yyyyMMdd'T'HHmmss'Z'}.db";
            string path = Path.Combine(options.Directory, name);
            await File.WriteAllTextAsync(path + ".sha256", $"{Convert.ToHexStringLower(written.FileSha256)}  {name}\n", cancellationToken).ConfigureAwait(false);
            File.Move(partial, path);
            Prune();
            status.LastSuccessUnixSeconds = shard.Time.GetUtcNow().ToUnixTimeSeconds();
            status.LastDurationSeconds = clock.Elapsed.TotalSeconds;
            status.LastSizeBytes = written.Bytes;
            status.LastRevision = revision;
            var level = clock.Elapsed > SlowBackup ? LogLevel.Warning : LogLevel.Information;
            if (_logger.IsEnabled(level))
                _logger.Log(level, "backup of shard {Shard} at revision {Revision}: {Bytes} bytes in {Ms} ms to {Path}", shard.Name, revision, written.Bytes, (long)clock.Elapsed.TotalMilliseconds, path);
            return revision;
        }
        finally
        {
            File.Delete(partial);
        }
    }

    // Names sort by revision (zero-padded), so the oldest come first.
    private void Prune()
    {
        var backups = Directory.GetFiles(options.Directory, $"{shard.Name}-*.db");
        Array.Sort(backups, StringComparer.Ordinal);
        for (int i = 0; i < backups.Length - options.Retention; i++)
        {
            File.Delete(backups[i]);
            File.Delete(backups[i] + ".sha256");
            if (_logger.IsEnabled(LogLevel.Information)) _logger.LogInformation("backup {Path} pruned (keeping {Retention})", backups[i], options.Retention);
        }
    }
}
