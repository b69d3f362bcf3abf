using System.Collections.Concurrent;
using KvJournal.Journal.Embedded;

namespace KvJournal.Journal.Service;

/// <summary>
/// The named streams one journal server holds (one per shard), each a FasterLog with its snapshots
/// under data-dir/streams/NAME. A stream is created by its first use.
/// </summary>
public sealed class JournalStreams(string dataDir, int maxEntryBytes) : IAsyncDisposable
{
    /// <summary>Largest entry a stream takes (--max-entry-bytes); FasterLog pages are sized for it.</summary>
    public int MaxEntryBytes => maxEntryBytes;

    private readonly ConcurrentDictionary<string, Lazy<FasterLogJournal>> _streams = new(StringComparer.Ordinal);

    /// <summary>Stream names are what shard names may be: lower-case letters, digits and '-'.</summary>
    public static bool IsValidName(string name) =>
        name.Length is > 0 and <= 64 && name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-');

    public FasterLogJournal Get(string name) =>
        _streams.GetOrAdd(name, n => new Lazy<FasterLogJournal>(() => new FasterLogJournal(Path.Combine(dataDir, "streams", n), maxEntryBytes))).Value;

    /// <summary>Opens the streams already on disk, so their recovery happens at start, not on first use.</summary>
    public void OpenExisting()
    {
        string root = Path.Combine(dataDir, "streams");
        if (!Directory.Exists(root)) return;
        foreach (var dir in Directory.EnumerateDirectories(root))
        {
            string name = Path.GetFileName(dir);
            if (IsValidName(name)) Get(name);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var stream in _streams.Values)
        {
            if (stream.IsValueCreated) await stream.Value.DisposeAsync().ConfigureAwait(false);
        }
    }
}
