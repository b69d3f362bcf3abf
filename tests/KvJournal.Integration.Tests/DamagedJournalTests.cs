using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// A member whose journal files were damaged after a kill -9: flipped bytes, a truncated file, a
/// zeroed tail, a torn write past the last commit. It never hangs, never serves a wrong value
/// or silently starts without acknowledged writes: it refuses to start naming the file and offset
/// (and the operator's way out), or starts with everything it acknowledged.
/// </summary>
public sealed class DamagedJournalTests(DamagedJournalTests.AcknowledgedJournal journal) : IClassFixture<DamagedJournalTests.AcknowledgedJournal>
{
    private static readonly TimeSpan StartLimit = TimeSpan.FromSeconds(60);

    /// <summary>A data dir holding a few thousand acknowledged puts, made once and copied for each damage.</summary>
    public sealed class AcknowledgedJournal : IAsyncLifetime
    {
        public string DataDir { get; } = Paths.NewTempDir("kvj-acked");
        public Dictionary<string, string> Acknowledged { get; } = [];
        public long Revision { get; private set; }

        public async Task InitializeAsync()
        {
            await using var kvj = await KvJournalProcess.StartAsync(DataDir);
            // Sixteen writers: group commits of several entries, as under real load.
            await Task.WhenAll(Enumerable.Range(0, 16).Select(async w =>
            {
                for (int i = 0; i < 200; i++)
                {
                    string key = $"/k/{w}/{i}", value = $"value {w} {i} {new string('x', i % 50)}";
                    var put = await kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFromUtf8(value) });
                    lock (Acknowledged)
                    {
                        Acknowledged[key] = value;
                        Revision = Math.Max(Revision, put.Header.Revision);
                    }
                }
            }));
            await kvj.KillAsync();
        }

        public Task DisposeAsync()
        {
            Paths.DeleteDir(DataDir);
            return Task.CompletedTask;
        }

        /// <summary>A copy of the data dir to damage, and its log file.</summary>
        public (string DataDir, string Log) Copy()
        {
            string copy = Paths.NewTempDir("kvj-damaged");
            foreach (var file in Directory.EnumerateFiles(DataDir, "*", SearchOption.AllDirectories))
            {
                string target = Path.Combine(copy, Path.GetRelativePath(DataDir, file));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(file, target);
            }
            return (copy, Path.Combine(copy, "journal", "fasterlog.log.0"));
        }
    }

    /// <summary>
    /// Where the log's writes end: FasterLog writes whole 512-byte sectors, and past the last one
    /// the file holds the zeros the journal writes ahead of its tail (ZeroedRunway). Damage is
    /// placed relative to this end, as it was to the file's length before the runway.
    /// </summary>
    private static long WrittenEnd(string log)
    {
        byte[] bytes = File.ReadAllBytes(log);
        int last = bytes.AsSpan().LastIndexOfAnyExcept((byte)0);
        return (last + 1 + 511) & ~511L;
    }

    private static string[] Member(string dataDir, params string[] extra) => KvJournalProcess.MemberArgs(Ports.Free(), dataDir, extra);

    // Started on a damaged copy: either it refuses (exit 1, naming the log file), or it serves
    // every acknowledged key with its acknowledged value. Returns whether it refused.
    private async Task<bool> RefusesOrServesEverythingAsync(string dataDir, string log)
    {
        KvJournalProcess kvj;
        try
        {
            kvj = await KvJournalProcess.StartAsync(dataDir).WaitAsync(StartLimit);
        }
        catch (InvalidOperationException refused)
        {
            Assert.Contains("server exited with 1", refused.Message);
            Assert.Contains($"cannot start member kvj-test: ", refused.Message);
            Assert.Contains(log, refused.Message);
            return true;
        }
        await using (kvj)
        {
            await AssertServesAsync(kvj, journal.Acknowledged.Count);
            return false;
        }
    }

    // Every key the member serves has its acknowledged value, and at least `expected` are served.
    private async Task<int> AssertServesAsync(KvJournalProcess kvj, int expected)
    {
        var all = await kvj.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("/k/"), RangeEnd = ByteString.CopyFromUtf8("/k0") });
        foreach (var kv in all.Kvs)
            Assert.Equal(journal.Acknowledged[kv.Key.ToStringUtf8()], kv.Value.ToStringUtf8());
        Assert.True(all.Kvs.Count >= expected, $"{all.Kvs.Count} of {journal.Acknowledged.Count} acknowledged keys served");
        return all.Kvs.Count;
    }

    [Fact]
    public async Task FlippedBytesAreRefusedNamingTheFileAndNeverServedAsWrongValues()
    {
        var (sample, sampleLog) = journal.Copy();
        long length = WrittenEnd(sampleLog);
        Paths.DeleteDir(sample);
        int refused = 0;
        var random = new Random(18);
        for (int i = 1; i <= 8; i++)
        {
            var (dir, log) = journal.Copy();
            long offset = length * i / 9;
            var garbage = new byte[16 + random.Next(49)];
            random.NextBytes(garbage);
            using (var file = File.OpenWrite(log))
            {
                file.Position = offset;
                file.Write(garbage);
            }
            if (await RefusesOrServesEverythingAsync(dir, log)) refused++;
            Paths.DeleteDir(dir);
        }
        // Entries fill the file: damage inside it is seen, not served.
        Assert.True(refused >= 6, $"{refused} of 8 damaged copies refused");
    }

    [Theory]
    [InlineData(100, false)]   // may cut only the padding after the last commit
    [InlineData(2_000, true)]
    [InlineData(-2, true)]     // half the file
    public async Task ATruncatedLogIsRefusedAtOnceAndStartUpNeverHangs(int cut, bool entriesCut)
    {
        var (dir, log) = journal.Copy();
        long end = WrittenEnd(log);
        using (var file = File.OpenWrite(log)) file.SetLength(cut > 0 ? end - cut : end / -cut);
        if (entriesCut)
        {
            var (exitCode, output) = await KvJournalProcess.RunToExitAsync(StartLimit, Member(dir));
            Assert.Equal(1, exitCode);
            Assert.Contains("cannot start member kvj-test", output);
            Assert.Contains($"{log} is ", output);
            Assert.Contains("was truncated or lost", output);
            Assert.Contains("--unsafe-accept-journal-loss", output);
        }
        else
        {
            await RefusesOrServesEverythingAsync(dir, log);
        }
        Paths.DeleteDir(dir);
    }

    [Fact]
    public async Task AZeroedTailIsRefusedUntilTheOperatorAcceptsTheLossOnce()
    {
        var (dir, log) = journal.Copy();
        long end = WrittenEnd(log);
        using (var file = File.OpenWrite(log))
        {
            file.Position = end - 20 * 1024;
            file.Write(new byte[20 * 1024]);
        }
        var (exitCode, output) = await KvJournalProcess.RunToExitAsync(StartLimit, Member(dir));
        Assert.Equal(1, exitCode);
        Assert.Contains("acknowledged journal entries are missing at the end", output);

        // Accepted: it starts with what it can read, every value it serves right, and says what was lost.
        int served;
        await using (var accepted = await KvJournalProcess.StartAsync(dir, "--unsafe-accept-journal-loss"))
        {
            served = await AssertServesAsync(accepted, 1);
            Assert.True(served < journal.Acknowledged.Count);
            await accepted.WaitForOutputAsync("going on without it (--unsafe-accept-journal-loss)");
            await accepted.KillAsync();
        }
        // The acceptance holds: a later start needs no flag and serves the same.
        await using (var again = await KvJournalProcess.StartAsync(dir))
        {
            Assert.Equal(served, await AssertServesAsync(again, served));
        }
        Paths.DeleteDir(dir);
    }

    [Fact]
    public async Task ATornWritePastTheLastCommitIsDroppedWithALogLine()
    {
        var (dir, log) = journal.Copy();
        var torn = new byte[12 * 1024];
        new Random(3).NextBytes(torn);
        using (var file = new FileStream(log, FileMode.Append)) file.Write(torn);
        await using (var kvj = await KvJournalProcess.StartAsync(dir).WaitAsync(StartLimit))
        {
            Assert.Equal(journal.Acknowledged.Count, await AssertServesAsync(kvj, journal.Acknowledged.Count));
            await kvj.WaitForOutputAsync("were never committed (a write cut short by a crash");
            // Nothing acknowledged is reused: the next write gets the next revision.
            var put = await kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("/after"), Value = ByteString.CopyFromUtf8("v") });
            Assert.Equal(journal.Revision + 1, put.Header.Revision);
        }
        Paths.DeleteDir(dir);
    }

    [Fact]
    public async Task ADamagedSnapshotIsPassedOverForTheOneBeforeItAndWithNoneLeftTheStartIsRefused()
    {
        string dir = Paths.NewTempDir("kvj-snapshots");
        string snapshots = Path.Combine(dir, "journal", "snapshots");
        var acknowledged = new Dictionary<string, string>();
        await using (var kvj = await KvJournalProcess.StartAsync(dir, "--snapshot-count", "300"))
        {
            // Snapshots are taken in the background (checked each second): write past the count,
            // wait for the next one, twice, then write some more that only the journal holds.
            for (int round = 1; round <= 3; round++)
            {
                for (int i = 0; i < 350; i++)
                {
                    string key = $"/s/{round}/{i}";
                    acknowledged[key] = $"v{round} {i}";
                    await kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFromUtf8(acknowledged[key]) });
                }
                var deadline = DateTime.UtcNow.AddSeconds(30);
                while (round < 3 && Directory.GetFiles(snapshots, "*.snap").Length < round) await Task.Delay(20).WaitAsync(deadline - DateTime.UtcNow);
            }
            await kvj.KillAsync();
        }
        var files = Directory.GetFiles(snapshots, "*.snap").Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(2, files.Length);
        static void Flip(string file)
        {
            using var f = File.OpenWrite(file);
            f.Position = f.Length / 2;
            f.WriteByte(0x5a);
            f.WriteByte(0xa5);
        }

        Flip(files[1]);
        await using (var kvj = await KvJournalProcess.StartAsync(dir))
        {
            var all = await kvj.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("/s/"), RangeEnd = ByteString.CopyFromUtf8("/s0") });
            Assert.Equal(acknowledged.Count, all.Kvs.Count);
            foreach (var kv in all.Kvs) Assert.Equal(acknowledged[kv.Key.ToStringUtf8()], kv.Value.ToStringUtf8());
            await kvj.WaitForOutputAsync($"state snapshot {files[1]} is damaged");
            await kvj.WaitForOutputAsync("trying the snapshot before it");
            await kvj.KillAsync();
        }

        Flip(files[0]);
        var (exitCode, output) = await KvJournalProcess.RunToExitAsync(StartLimit, Member(dir));
        Assert.Equal(1, exitCode);
        Assert.Contains($"state snapshot {files[0]} is damaged", output);
        Assert.Contains("no older snapshot is left to start from", output);
        Paths.DeleteDir(dir);
    }
}
