using System.Text;
using KvJournal.Journal;
using KvJournal.Journal.Embedded;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Unit.Tests;

/// <summary>The embedded journal against its contract: durable appends, order, reopen, tailing.</summary>
public sealed class FasterLogJournalTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "kvjournal-tests", "journal-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static async Task<List<string>> ReadAll(IJournal journal, int expected)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var items = new List<string>();
        await foreach (var record in journal.ReadAsync(-1, cts.Token))
        {
            items.Add(Encoding.UTF8.GetString(record.Data.Span));
            if (items.Count == expected) break;
        }
        return items;
    }

    [Fact]
    public async Task ConcurrentAppendsAreDurableOrderedAndSurviveReopen()
    {
        var positions = new System.Collections.Concurrent.ConcurrentBag<long>();
        await using (var journal = new FasterLogJournal(_dir, 64 * 1024))
        {
            Assert.Equal(-1, journal.LastDurablePosition);
            await Task.WhenAll(Enumerable.Range(0, 200).Select(i => Task.Run(async () => positions.Add(await journal.AppendAsync(Encoding.UTF8.GetBytes($"e{i}"))))));
            Assert.Equal(200, positions.Distinct().Count());
            Assert.Equal(positions.Max(), journal.LastDurablePosition);
            // Group commit: appends that arrive during a flush share the next one.
            Assert.InRange(journal.Commits, 1, 199);
        }
        await using (var reopened = new FasterLogJournal(_dir, 64 * 1024))
        {
            Assert.Equal(positions.Max(), reopened.LastDurablePosition);
            var items = await ReadAll(reopened, 200);
            Assert.Equal(Enumerable.Range(0, 200).Select(i => $"e{i}").Order(), items.Order());
            long next = await reopened.AppendAsync("after"u8.ToArray());
            Assert.True(next > positions.Max());
        }
    }

    /// <summary>
    /// The log's file is kept written with zeros ahead of its tail (ZeroedRunway), and zeros never
    /// land on an entry: eight writers append 48 MiB of entries from 1 byte to the largest the
    /// journal takes, so entries skip to the next page, against a runway of two 64 KiB chunks that
    /// they keep catching up with while a chunk is being written; every entry reads back whole,
    /// before and after the log is reopened, and past the last one the file holds zeros.
    /// </summary>
    [Fact]
    public async Task ZerosWrittenAheadOfTheTailNeverReachAnEntry()
    {
        const int maxEntry = 256 * 1024;
        const long total = 48L << 20;
        var appended = new System.Collections.Concurrent.ConcurrentDictionary<long, byte[]>();
        string log = Path.Combine(_dir, "fasterlog.log.0");
        bool onDisk; // the runway is off on memory file systems
        await using (var journal = new FasterLogJournal(_dir, maxEntry, new ZeroedRunway.Shape(64 * 1024, 2)))
        {
            onDisk = new DriveInfo(_dir).DriveFormat is not ("tmpfs" or "ramfs");
            long written = 0;
            await Task.WhenAll(Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
            {
                var random = new Random(w);
                while (Interlocked.Read(ref written) < total)
                {
                    var entry = new byte[random.Next(8) == 0 ? maxEntry : random.Next(1, maxEntry / 4)];
                    random.NextBytes(entry);
                    appended[await journal.AppendAsync(entry)] = entry;
                    Interlocked.Add(ref written, entry.Length);
                }
            })));
            await AssertEntriesAsync(journal, appended);
            // The runway writes its next chunk after the last commit, on a thread of its own
            // (late on a loaded machine): the zeros are awaited, within a bound.
            if (onDisk)
                await Poll.UntilAsync(() => Task.FromResult(ZerosAtTheEnd(log)), z => z.Zeros >= 64 * 1024, TimeSpan.FromSeconds(20), "64 KiB of zeros past the last entry");
        }
        if (onDisk)
        {
            var (zeros, end) = ZerosAtTheEnd(log);
            Assert.True(zeros >= 64 * 1024, $"{zeros} bytes of zeros past the last entry, at {end}");
        }
        await using var reopened = new FasterLogJournal(_dir, maxEntry);
        await AssertEntriesAsync(reopened, appended);
    }

    // How many zero bytes end the file, and where they begin.
    private static (long Zeros, long End) ZerosAtTheEnd(string file)
    {
        byte[] bytes = File.ReadAllBytes(file);
        int end = bytes.AsSpan().LastIndexOfAnyExcept((byte)0) + 1;
        return (bytes.Length - end, end);
    }

    private static async Task AssertEntriesAsync(IJournal journal, IReadOnlyDictionary<long, byte[]> appended)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        int read = 0;
        await foreach (var record in journal.ReadAsync(-1, cts.Token))
        {
            Assert.True(appended.TryGetValue(record.Position, out var entry), $"an entry at {record.Position} that was never appended");
            Assert.True(entry.AsSpan().SequenceEqual(record.Data.Span), $"the entry at {record.Position} differs from what was appended");
            if (++read == appended.Count) break;
        }
        Assert.Equal(appended.Count, read);
    }

    /// <summary>
    /// Large entries from many writers fill FasterLog's two tail pages again and again: an append
    /// that waits for room while holding the append lock must not keep the commit loop (whose
    /// flush makes that room) from completing its waiters. It did: the cluster load harness hung a
    /// member with one thread spinning in Enqueue at 100,000 nodes.
    /// </summary>
    [Fact]
    public async Task LargeEntriesFromManyWritersNeverStallTheJournal()
    {
        const int maxEntry = 1536 * 1024, writers = 8, each = 40;
        await using var journal = new FasterLogJournal(_dir, maxEntry);
        using var tailing = new CancellationTokenSource();
        int read = 0;
        var reader = Task.Run(async () =>
        {
            await foreach (var _ in journal.ReadAsync(-1, tailing.Token))
                if (Interlocked.Increment(ref read) == writers * each) return;
        });
        var entry = new byte[512 * 1024];
        var appends = Task.WhenAll(Enumerable.Range(0, writers).Select(_ => Task.Run(async () =>
        {
            for (int i = 0; i < each; i++) await journal.AppendAsync(entry);
        })));
        await appends.WaitAsync(TimeSpan.FromSeconds(60));
        await reader.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(writers * each, read);
    }

    [Fact]
    public async Task ReaderTailsEntriesAppendedAfterItStarted()
    {
        await using var journal = new FasterLogJournal(_dir, 64 * 1024);
        await journal.AppendAsync("first"u8.ToArray());
        var reading = ReadAll(journal, 3);
        await journal.AppendAsync("second"u8.ToArray());
        await journal.AppendAsync("third"u8.ToArray());
        Assert.Equal(["first", "second", "third"], await reading);
    }
}
