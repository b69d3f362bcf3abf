using KvJournal.Member.Shards;
using KvJournal.Storage.Snapshot;
using Microsoft.Extensions.Logging;

namespace KvJournal.Member.Snapshots;

/// <summary>
/// Writes the shard's state snapshot into the journal every <see cref="ShardOptions.SnapshotCount"/>
/// applied entries, so a new or restarted member starts from it instead of the journal's first
/// entry, and the journal is trimmed below the snapshots it keeps. One member writes them: the one
/// reported as leader (the lowest announced id), so members sharing a journal do not all upload
/// the same state.
/// </summary>
/// <remarks>
/// The state is written to a local file under the store's read lock (writes wait meanwhile, about
/// as long as writing the keyspace to the page cache takes), then uploaded with no lock held.
/// </remarks>
internal sealed class StateSnapshots(Shard shard)
{
    private static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(1);
    private readonly ILogger _logger = shard.Logs.CreateLogger("KvJournal.Snapshot");
    private long _atEntries;
    private string? _lastFailure;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(CheckInterval);
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            if (shard.AppliedEntries - _atEntries < shard.SnapshotCount || shard.LeaderId != shard.MemberId) continue;
            try
            {
                long position = await TakeAsync(cancellationToken).ConfigureAwait(false);
                if (_lastFailure is not null && _logger.IsEnabled(LogLevel.Information))
                    _logger.LogInformation("state snapshot stored again (at journal position {Position}) after failures", position);
                _lastFailure = null;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // The journal is away or the disk is full: the next tick tries again; nothing is lost
                // meanwhile (the journal is only trimmed once a snapshot is stored). Logged once per
                // kind of failure, not every second.
                if (ex.Message != _lastFailure) _logger.LogWarning(ex, "state snapshot failed; retried every {Interval} s", CheckInterval.TotalSeconds);
                _lastFailure = ex.Message;
            }
        }
    }

    /// <summary>Takes one snapshot now and stores it in the journal; returns the position it covers.</summary>
    public async Task<long> TakeAsync(CancellationToken cancellationToken)
    {
        string file = TempFile();
        try
        {
            long entries = shard.AppliedEntries;
            long position;
            await using (var output = new FileStream(file, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                position = shard.Read(_ =>
                {
                    StateSnapshot.Write(output, shard.Store, shard.Leases, shard.Applier);
                    return shard.Applier.Position;
                });
            }
            if (position < 0) return position;
            await using (var input = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan))
            {
                await shard.Journal.PutSnapshotAsync(position, input, cancellationToken).ConfigureAwait(false);
            }
            _atEntries = entries;
            return position;
        }
        finally
        {
            File.Delete(file);
        }
    }

    // A snapshot on its way to or from the journal waits in a temporary file of its own.
    private static string TempFile() => Path.Combine(Path.GetTempPath(), $"kvjournal-state-{Guid.NewGuid():N}.snap");

    /// <summary>Copies a snapshot being received into a local temporary file (it is verified before it is read).</summary>
    public static async Task<string> DownloadAsync(Stream data, CancellationToken cancellationToken)
    {
        string file = TempFile();
        await using var output = new FileStream(file, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
        await data.CopyToAsync(output, cancellationToken).ConfigureAwait(false);
        return file;
    }
}
