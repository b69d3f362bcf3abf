using System.Globalization;
using System.Security.Cryptography;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// Automatic backups (--backup-dir): on schedule, one etcd snapshot file per shard named by its
/// revision with a sha256sum side file, pruned to the retention, reported on /metrics; after a
/// kill -9 the newest restores into an empty data dir with every key at its revision.
/// </summary>
public sealed class BackupTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private static long RevisionOf(string backup) =>
        long.Parse(Path.GetFileName(backup).Split('-')[1], CultureInfo.InvariantCulture);

    private static string[] Backups(string dir)
    {
        var files = Directory.GetFiles(dir, "default-*.db");
        Array.Sort(files, StringComparer.Ordinal);
        return files;
    }

    [Fact]
    public async Task BackupsFollowTheScheduleKeepTheRetentionAndRestoreAfterAKill9()
    {
        string dir = Paths.NewTempDir("backups");
        string restoredDir = Path.Combine(Paths.NewTempDir("backup-restored"), "member");
        try
        {
            var kvj = await KvJournalProcess.StartAsync(null, "--backup-dir", dir, "--backup-interval", "1s", "--backup-retention", "2");
            List<string> expected;
            long head;
            try
            {
                for (int round = 0; round < 3; round++)
                {
                    for (int i = 0; i < 50; i++) await kvj.Kv.PutAsync(new PutRequest { Key = B($"b/{i:D3}"), Value = B($"round {round}") });
                    await kvj.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B($"b/{round:D3}") });
                    head = (await kvj.Kv.RangeAsync(new RangeRequest { Key = B("b/") })).Header.Revision;
                    await Poll.UntilAsync(() => Task.FromResult(Backups(dir)), files => files.Length > 0 && RevisionOf(files[^1]) == head, TimeSpan.FromSeconds(30), $"a backup at revision {head}");
                }
                head = RevisionOf(Backups(dir)[^1]);
                expected = KeyspaceAnswers.Kvs(await kvj.Kv.RangeAsync(new RangeRequest { Key = B("b/"), RangeEnd = B("b0"), Revision = head }));
                string metrics = await new HttpClient().GetStringAsync($"http://127.0.0.1:{kvj.Port}/metrics");
                Assert.Contains($"kvjournal_backup_last_revision{{shard=\"default\"}} {head}\n", metrics);
                Assert.Contains("kvjournal_backup_failures_total{shard=\"default\"} 0\n", metrics);
                await kvj.KillAsync();
            }
            finally
            {
                await kvj.DisposeAsync();
            }

            // The retention: the two newest, each with a checksum file sha256sum would accept, no partial file.
            var kept = Backups(dir);
            Assert.Equal(2, kept.Length);
            Assert.Equal(4, Directory.GetFiles(dir).Length);
            foreach (var backup in kept)
            {
                string line = await File.ReadAllTextAsync(backup + ".sha256");
                Assert.Equal($"{Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(backup)))}  {Path.GetFileName(backup)}\n", line);
            }
            var status = await Etcdutl.RunAsync("snapshot", "status", kept[^1], "-w", "json");
            Assert.True(status.ExitCode == 0, status.Stderr);
            Assert.Contains($"\"revision\":{head},", status.Stdout);

            // Everything gone but the backup: restore it into an empty data dir.
            var (exit, output) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(60), "snapshot", "restore", kept[^1], "--data-dir", restoredDir);
            Assert.True(exit == 0, output);
            await using var restored = await KvJournalProcess.StartAsync(restoredDir);
            Assert.Equal(expected, KeyspaceAnswers.Kvs(await restored.Kv.RangeAsync(new RangeRequest { Key = B("b/"), RangeEnd = B("b0"), Revision = head })));
        }
        finally
        {
            Paths.DeleteDir(dir);
            Paths.DeleteDir(Path.GetDirectoryName(restoredDir)!);
        }
    }
}
