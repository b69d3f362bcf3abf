using System.Globalization;
using Microsoft.Extensions.Logging;
using NATS.Client.ObjectStore;

namespace KvJournal.Journal.Nats;

/// <summary>
/// State snapshots of the replicated journal: objects of a JetStream object store (chunked and
/// replicated like the stream), named by the position they cover. The newest two are kept and
/// the stream is purged below the older one, so a member whose newest snapshot is damaged can
/// start from the one before it.
/// </summary>
public sealed partial class NatsJournal
{
    private const int SnapshotsKept = 2;
    private readonly string _snapshotBucket;
    private INatsObjStore? _snapshots;

    private async Task<INatsObjStore> SnapshotsAsync(CancellationToken cancellationToken) =>
        _snapshots ??= await new NatsObjContext(_js).CreateObjectStoreAsync(new NatsObjConfig(_snapshotBucket)
        {
            Storage = NatsObjStorageType.File,
            NumberOfReplicas = _options.Replicas,
        }, cancellationToken).ConfigureAwait(false);

    private static string SnapshotName(long position) => position.ToString("D20", CultureInfo.InvariantCulture);

    private async Task<List<long>> SnapshotPositionsAsync(INatsObjStore store, CancellationToken cancellationToken)
    {
        var positions = new List<long>();
        try
        {
            // Without OnNoData, listing an empty bucket waits for an object forever.
            await foreach (var o in store.ListAsync(new NatsObjListOpts { OnNoData = static _ => ValueTask.FromResult(true) }, cancellationToken).ConfigureAwait(false))
            {
                if (!o.Deleted && long.TryParse(o.Name, NumberStyles.None, CultureInfo.InvariantCulture, out long p)) positions.Add(p);
            }
        }
        catch (NatsObjNotFoundException)
        {
            // an empty bucket lists as not found
        }
        positions.Sort();
        return positions;
    }

    public async Task PutSnapshotAsync(long position, Stream snapshot, CancellationToken cancellationToken)
    {
        var store = await SnapshotsAsync(cancellationToken).ConfigureAwait(false);
        await store.PutAsync(SnapshotName(position), snapshot, leaveOpen: true, cancellationToken).ConfigureAwait(false);
        var positions = await SnapshotPositionsAsync(store, cancellationToken).ConfigureAwait(false);
        for (int i = 0; i < positions.Count - SnapshotsKept; i++) await store.DeleteAsync(SnapshotName(positions[i]), cancellationToken).ConfigureAwait(false);
        long oldestKept = positions[Math.Max(0, positions.Count - SnapshotsKept)];
        await TrimBelowAsync(oldestKept, cancellationToken).ConfigureAwait(false);
        if (_logger.IsEnabled(LogLevel.Information))
            _logger.LogInformation("journal: stored a state snapshot at {Position}; the stream keeps messages from {Sequence} on", Describe(position), MessageFrame.SequenceOf(oldestKept));
    }

    public async Task<JournalSnapshot?> GetSnapshotAsync(long belowPosition, CancellationToken cancellationToken)
    {
        var store = await SnapshotsAsync(cancellationToken).ConfigureAwait(false);
        var positions = await SnapshotPositionsAsync(store, cancellationToken).ConfigureAwait(false);
        for (int i = positions.Count - 1; i >= 0; i--)
        {
            if (positions[i] >= belowPosition) continue;
            // Downloaded whole into a file of its own (deleted on close): snapshots may be large.
            string file = Path.Combine(Path.GetTempPath(), $"kvjournal-nats-snapshot-{Guid.NewGuid():N}");
            var data = new FileStream(file, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose | FileOptions.Asynchronous);
            await store.GetAsync(SnapshotName(positions[i]), data, leaveOpen: true, cancellationToken).ConfigureAwait(false);
            data.Position = 0;
            return new JournalSnapshot(positions[i], data, $"NATS object {_snapshotBucket}/{SnapshotName(positions[i])}");
        }
        return null;
    }
}
