using KvJournal.Member.Logging;
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
/// Under the store's read lock the state is only copied out (the version arrays; keys and values
/// are immutable and shared), so writers wait for a memory copy; it is then encoded to a local
/// file and uploaded with no lock held.
/// </remarks>
internal sealed class StateSnapshots(Shard shard)
{
    private static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan SlowSnapshot = TimeSpan.FromSeconds(10);
    private readonly ILogger _logger = shard.Logs.CreateLogger("KvJournal.Snapshot");
    private long _atEntries;
    private readonly DutyFailures _failures = new(shard.Logs.CreateLogger("KvJournal.Snapshot"), "state snapshot", shard.Time);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(CheckInterval, shard.Time);
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            if (shard.AppliedEntries - _atEntries < shard.SnapshotCount || shard.LeaderId != shard.MemberId) continue;
            try
            {
                await TakeAsync(cancellationToken).ConfigureAwait(false);
                _failures.Succeeded();
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // The journal is away or the disk is full: the next tick tries again; nothing is lost
                // meanwhile (the journal is only trimmed once a snapshot is stored).
                _failures.Failed(ex);
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
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var view = shard.Read(_ => StateSnapshot.Capture(shard.Store, shard.Leases, shard.Applier));
            var captured = clock.Elapsed;
            long position = view.Position;
            if (position < 0) return position;
            // Encoding a large keyspace takes seconds of CPU: on a thread of its own, not a pool thread the writers need.
            await Task.Factory.StartNew(() =>
            {
                using var output = new FileStream(file, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
                StateSnapshot.Write(output, view);
            }, cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
            var written = clock.Elapsed;
            var input = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);
            await using (input.ConfigureAwait(false))
            {
                await shard.Journal.PutSnapshotAsync(position, input, cancellationToken).ConfigureAwait(false);
            }
            _atEntries = entries;
            // A slow snapshot is worth an operator's attention; writers waited only for the copy.
            var level = clock.Elapsed > SlowSnapshot ? LogLevel.Warning : LogLevel.Information;
            if (_logger.IsEnabled(level))
                _logger.Log(level, "state snapshot of {Keys} keys at {Position}: copied in {CopyMs} ms under the store lock, written in {WriteMs} ms, stored in {StoreMs} ms",
                    view.KeyCount, shard.Journal.Describe(position), (long)captured.TotalMilliseconds, (long)(written - captured).TotalMilliseconds, (long)(clock.Elapsed - written).TotalMilliseconds);
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
        var output = new FileStream(file, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
        await using var closeOutput = output.ConfigureAwait(false);
        await data.CopyToAsync(output, cancellationToken).ConfigureAwait(false);
        return file;
    }
}
