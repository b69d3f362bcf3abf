using System.Globalization;
using Microsoft.Extensions.Logging;
using NATS.Client.JetStream.Models;
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

    // The object store's own listing misses objects just put and waits forever on an empty bucket,
    // so the names come from the subjects of its metadata messages ($O.BUCKET.M.<base64url name>)
    // in the stream behind it; a deleted object keeps its subject and is passed over.
    private async Task<List<long>> SnapshotPositionsAsync(INatsObjStore store, CancellationToken cancellationToken)
    {
        var positions = new List<long>();
        string prefix = $"$O.{_snapshotBucket}.M.";
        var info = await _js.GetStreamAsync("OBJ_" + _snapshotBucket, new StreamInfoRequest { SubjectsFilter = prefix + ">" }, cancellationToken).ConfigureAwait(false);
        foreach (string subject in info.Info.State.Subjects?.Keys ?? (IEnumerable<string>)[])
        {
            string encoded = subject[prefix.Length..].Replace('-', '+').Replace('_', '/');
            string name;
            try
            {
                name = System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(encoded.PadRight(encoded.Length + (4 - encoded.Length % 4) % 4, '=')));
            }
            catch (FormatException)
            {
                continue;
            }
            if (!long.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out long p)) continue;
            try
            {
                if (!(await store.GetInfoAsync(name, showDeleted: false, cancellationToken).ConfigureAwait(false)).Deleted) positions.Add(p);
            }
            catch (NatsObjNotFoundException)
            {
            }
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
        // At start, while a just-restarted cluster recovers, JetStream answers nothing for a while.
        var store = await WhileRecoveringAsync(() => SnapshotsAsync(cancellationToken), cancellationToken).ConfigureAwait(false);
        var positions = await WhileRecoveringAsync(() => SnapshotPositionsAsync(store, cancellationToken), cancellationToken).ConfigureAwait(false);
        for (int i = positions.Count - 1; i >= 0; i--)
        {
            if (positions[i] < belowPosition) return await DownloadAsync(store, SnapshotName(positions[i]), positions[i], cancellationToken).ConfigureAwait(false);
        }
        // Below every snapshot, a state imported from etcd, which covers no entry.
        return belowPosition > ImportedPosition && await WhileRecoveringAsync(() => HasImportedAsync(store, cancellationToken), cancellationToken).ConfigureAwait(false)
            ? await DownloadAsync(store, ImportedName, ImportedPosition, cancellationToken).ConfigureAwait(false)
            : null;
    }

    // Downloaded whole into a file of its own (deleted on close): snapshots may be large.
    private async Task<JournalSnapshot> DownloadAsync(INatsObjStore store, string name, long position, CancellationToken cancellationToken)
    {
        string file = Path.Combine(Path.GetTempPath(), $"kvjournal-nats-snapshot-{Guid.NewGuid():N}");
        var data = new FileStream(file, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose | FileOptions.Asynchronous);
        await store.GetAsync(name, data, leaveOpen: true, cancellationToken).ConfigureAwait(false);
        data.Position = 0;
        return new JournalSnapshot(position, data, $"NATS object {_snapshotBucket}/{name}");
    }

    private static async Task<bool> HasImportedAsync(INatsObjStore store, CancellationToken cancellationToken)
    {
        try
        {
            await store.GetInfoAsync(ImportedName, showDeleted: false, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (NatsObjNotFoundException)
        {
            return false;
        }
    }

    // The position an imported state covers (none), and its object's name (no position parses from it).
    private const long ImportedPosition = Snapshots.SnapshotFiles.ImportedPosition;
    private const string ImportedName = "imported";

    /// <summary>
    /// Stores a state that covers no entry (a keyspace imported from etcd) for every member of
    /// this shard to start from; refused (<see cref="InvalidOperationException"/>) unless the
    /// stream holds no message and no snapshot yet. <paramref name="state"/> is read from its
    /// start (it must be seekable): a put that JetStream did not answer, as it does not while a
    /// just-made bucket has no leader yet, goes again, up to the request timeout.
    /// </summary>
    public async Task PutImportedStateAsync(Stream state, CancellationToken cancellationToken)
    {
        if (!await WhileRecoveringAsync(() => IsNewAsync(cancellationToken), cancellationToken).ConfigureAwait(false))
            throw new InvalidOperationException($"NATS stream {_stream} is not new (it has messages or a snapshot): an imported state only goes into a new one");
        var store = await WhileRecoveringAsync(() => SnapshotsAsync(cancellationToken), cancellationToken).ConfigureAwait(false);
        await WhileRecoveringAsync(() =>
        {
            state.Position = 0;
            return store.PutAsync(ImportedName, state, leaveOpen: true, cancellationToken).AsTask();
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Whether the stream holds nothing yet: no message, no snapshot, no imported state.</summary>
    public async Task<bool> IsNewAsync(CancellationToken cancellationToken)
    {
        var info = await _js.GetStreamAsync(_stream, cancellationToken: cancellationToken).ConfigureAwait(false);
        var store = await SnapshotsAsync(cancellationToken).ConfigureAwait(false);
        return info.Info.State.LastSeq == 0 && !await HasImportedAsync(store, cancellationToken).ConfigureAwait(false)
            && (await SnapshotPositionsAsync(store, cancellationToken).ConfigureAwait(false)).Count == 0;
    }
}
