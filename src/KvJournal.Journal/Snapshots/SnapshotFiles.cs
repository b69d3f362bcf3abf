using System.Globalization;

namespace KvJournal.Journal.Snapshots;

/// <summary>
/// A journal's snapshots as files, one per covered position ("POSITION.snap", zero-padded so names
/// sort by position). A snapshot is written to a temporary file, flushed to the device and then
/// renamed, so a crash leaves either the whole snapshot or none. The newest <see cref="Keep"/> are kept.
/// </summary>
public sealed class SnapshotFiles
{
    /// <summary>Snapshots kept: the newest, and one before it in case the newest turns out unreadable.</summary>
    public const int Keep = 2;
    private const string Suffix = ".snap";
    private readonly string _directory;
    private readonly SemaphoreSlim _writing = new(1, 1);

    public SnapshotFiles(string directory)
    {
        _directory = directory;
        Directory.CreateDirectory(directory);
        foreach (var tmp in Directory.EnumerateFiles(directory, "*.tmp")) File.Delete(tmp); // a write cut short
    }

    /// <summary>Positions of the snapshots kept, oldest first.</summary>
    public IReadOnlyList<long> Positions()
    {
        var positions = new List<long>();
        foreach (var path in Directory.EnumerateFiles(_directory, "*" + Suffix))
        {
            if (long.TryParse(Path.GetFileNameWithoutExtension(path), NumberStyles.None, CultureInfo.InvariantCulture, out long p)) positions.Add(p);
        }
        positions.Sort();
        return positions;
    }

    private const int SyncEveryBytes = 8 << 20;

    /// <summary>Stores a snapshot durably and drops the oldest beyond <see cref="Keep"/>; returns the oldest position kept.</summary>
    public async Task<long> PutAsync(long position, Stream snapshot, CancellationToken cancellationToken)
    {
        await _writing.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            string path = PathOf(position), tmp = path + ".tmp";
            // On a thread of its own: the copy and its fsyncs block, and on a small machine they
            // would hold thread-pool threads that the writers' requests need.
            await Task.Factory.StartNew(() => Copy(snapshot, tmp, cancellationToken), cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
            File.Move(tmp, path, overwrite: true);
            var positions = Positions();
            for (int i = 0; i < positions.Count - Keep; i++) File.Delete(PathOf(positions[i]));
            return positions[Math.Max(0, positions.Count - Keep)];
        }
        finally
        {
            _writing.Release();
        }
    }

    // Made durable a few MiB at a time: one fsync of a whole large snapshot at the end would queue
    // hundreds of MiB of writeback ahead of the journal's own fsyncs on the same disk.
    private static void Copy(Stream snapshot, string path, CancellationToken cancellationToken)
    {
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        var buffer = new byte[1 << 20];
        long unsynced = 0;
        int n;
        while ((n = snapshot.Read(buffer)) > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            file.Write(buffer, 0, n);
            if ((unsynced += n) >= SyncEveryBytes)
            {
                file.Flush(flushToDisk: true);
                unsynced = 0;
            }
        }
        file.Flush(flushToDisk: true);
    }

    /// <summary>
    /// The newest snapshot covering a position below <paramref name="belowPosition"/>, or null;
    /// below them all, the imported state (position -1) when there is one.
    /// </summary>
    public JournalSnapshot? OpenNewest(long belowPosition = long.MaxValue)
    {
        var positions = Positions();
        for (int i = positions.Count - 1; i >= 0; i--)
        {
            long position = positions[i];
            if (position >= belowPosition) continue;
            return Open(position, PathOf(position));
        }
        string imported = Path.Combine(_directory, ImportedFile);
        return belowPosition > ImportedPosition && File.Exists(imported) ? Open(ImportedPosition, imported) : null;
    }

    private static JournalSnapshot Open(long position, string path) =>
        new(position, new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan), path);

    /// <summary>The position a state imported from another store covers: none (it comes before the first entry).</summary>
    public const long ImportedPosition = -1;

    private const string ImportedFile = "imported" + Suffix;

    /// <summary>
    /// Stores a state that covers no entry (a keyspace imported from etcd), durably; refused
    /// (<see cref="InvalidOperationException"/>) when the directory holds any snapshot already.
    /// </summary>
    public async Task PutImportedAsync(Stream state, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(_directory);
        if (Positions().Count > 0 || File.Exists(Path.Combine(_directory, ImportedFile)))
            throw new InvalidOperationException($"{_directory} holds snapshots already: an imported state only goes into a new journal");
        string path = Path.Combine(_directory, ImportedFile), tmp = path + ".tmp";
        await Task.Factory.StartNew(() => Copy(state, tmp, cancellationToken), cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
        File.Move(tmp, path);
    }

    private string PathOf(long position) => Path.Combine(_directory, position.ToString("D20", CultureInfo.InvariantCulture) + Suffix);
}
