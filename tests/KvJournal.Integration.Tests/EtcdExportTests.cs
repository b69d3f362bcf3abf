using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// The way back to etcd with every revision kept: `etcdctl snapshot save` against KvJournal
/// writes etcd's own database file; `etcdutl snapshot status` reads it, `etcdutl snapshot
/// restore` makes a data dir a stock etcd starts on, and that etcd answers as the KvJournal
/// member did at every retained revision, replays the same watch history, holds the same leases,
/// lets the same users in and gives the next write the same revision. The same file restored into
/// a new KvJournal member answers alike too.
/// </summary>
public sealed class EtcdExportTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    [Fact]
    public async Task ASnapshotOfKvJournalRestoresIntoEtcdWithEveryRetainedRevisionAndLease()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        var lease = await new Lease.LeaseClient(kvj.Channel).LeaseGrantAsync(new LeaseGrantRequest { TTL = 900 });
        for (int i = 0; i < 60; i++) await kvj.Kv.PutAsync(new PutRequest { Key = B($"k/{i % 20}"), Value = B($"v{i}"), Lease = i % 7 == 0 ? lease.ID : 0 });
        await kvj.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B("k/3") });
        // Writes of one revision in other than key order: etcd's sub-revisions keep that order.
        await kvj.Kv.TxnAsync(new TxnRequest
        {
            Success = { new RequestOp { RequestPut = new PutRequest { Key = B("k/t2"), Value = B("b") } }, new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = B("k/4") } }, new RequestOp { RequestPut = new PutRequest { Key = B("k/t1"), Value = B("a") } } },
        });
        long compactAt = (await kvj.Kv.PutAsync(new PutRequest { Key = B("k/5"), Value = B("before compaction") })).Header.Revision - 20;
        await kvj.Kv.CompactAsync(new CompactionRequest { Revision = compactAt });
        for (int i = 0; i < 15; i++) await kvj.Kv.PutAsync(new PutRequest { Key = B($"k/{i}"), Value = B($"after{i}") });
        await kvj.Kv.PutAsync(new PutRequest { Key = B("k/big"), Value = ByteString.CopyFrom(new byte[100_000]) }); // a value on overflow pages
        await kvj.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B("k/1"), RangeEnd = B("k/2") });
        long head = (await kvj.Kv.RangeAsync(new RangeRequest { Key = B("k/") })).Header.Revision;

        string dir = Paths.NewTempDir("kvjournal-export");
        try
        {
            string snapshot = await KeyspaceAnswers.SaveSnapshotAsync(kvj, dir);
            // etcd's own tool reads the file; KvJournal's status prints the same.
            var theirs = await Etcdutl.RunAsync("snapshot", "status", snapshot, "-w", "json");
            Assert.True(theirs.ExitCode == 0, theirs.Stderr);
            Assert.Contains($"\"revision\":{head},", theirs.Stdout);
            var (exit, ours) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(30), "snapshot", "status", snapshot, "-w", "json");
            Assert.Equal(0, exit);
            Assert.Equal(theirs.Stdout.Trim(), ours.Trim());

            await using var etcd = await ReferenceEtcdProcess.StartRestoredAsync(snapshot);
            await using var back = await KvJournalProcess.StartAsync(await KeyspaceAnswers.RestoreIntoKvJournalAsync(snapshot, dir));
            foreach (var restored in new ServerProcess[] { etcd, back })
            {
                for (long rev = compactAt; rev <= head; rev++)
                {
                    var request = new RangeRequest { Key = B("k/"), RangeEnd = B("k0"), Revision = rev };
                    Assert.Equal(KeyspaceAnswers.Kvs(await kvj.Kv.RangeAsync(request)), KeyspaceAnswers.Kvs(await restored.Kv.RangeAsync(request)));
                }
                var below = new RangeRequest { Key = B("k/"), RangeEnd = B("k0"), Revision = compactAt - 1 };
                var compacted = await Assert.ThrowsAsync<RpcException>(() => restored.Kv.RangeAsync(below).ResponseAsync);
                Assert.Equal("etcdserver: mvcc: required revision has been compacted", compacted.Status.Detail);

                Assert.Equal(await KeyspaceAnswers.HistoryAsync(kvj, "k/", "k0", compactAt + 1, head), await KeyspaceAnswers.HistoryAsync(restored, "k/", "k0", compactAt + 1, head));

                var ttl = new LeaseTimeToLiveRequest { ID = lease.ID, Keys = true };
                var expected = await new Lease.LeaseClient(kvj.Channel).LeaseTimeToLiveAsync(ttl);
                var actual = await new Lease.LeaseClient(restored.Channel).LeaseTimeToLiveAsync(ttl);
                Assert.Equal(expected.GrantedTTL, actual.GrantedTTL);
                Assert.Equal(expected.Keys, actual.Keys);
                Assert.InRange(actual.TTL, 800, 900);
            }
            var next = new PutRequest { Key = B("k/next"), Value = B("v") };
            long written = (await kvj.Kv.PutAsync(next)).Header.Revision;
            Assert.Equal(written, (await etcd.Kv.PutAsync(next)).Header.Revision);
            Assert.Equal(written, (await back.Kv.PutAsync(next)).Header.Revision);
        }
        finally
        {
            Paths.DeleteDir(dir);
        }
    }

    [Fact]
    public async Task UsersMadeInKvJournalLogInToEtcdWithTheirPasswordsAfterAnExport()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        await KeyspaceAnswers.SetUpUsersAsync(kvj);

        string dir = Paths.NewTempDir("kvjournal-export-auth");
        try
        {
            string snapshot = await KeyspaceAnswers.SaveSnapshotAsync(kvj, dir, "--user", "root:rootpw");
            await using var etcd = await ReferenceEtcdProcess.StartRestoredAsync(snapshot);
            await using var back = await KvJournalProcess.StartAsync(await KeyspaceAnswers.RestoreIntoKvJournalAsync(snapshot, dir));
            foreach (var server in new ServerProcess[] { kvj, etcd, back })
            {
                await KeyspaceAnswers.AssertUsersAsync(server);
            }
        }
        finally
        {
            Paths.DeleteDir(dir);
        }
    }

    [Fact]
    public async Task AnEmptyKeyspaceMovesAtRevisionOneAsANewEtcdIs()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        string dir = Paths.NewTempDir("kvjournal-export-empty");
        try
        {
            string snapshot = await KeyspaceAnswers.SaveSnapshotAsync(kvj, dir);
            await using var etcd = await ReferenceEtcdProcess.StartRestoredAsync(snapshot);
            await using var back = await KvJournalProcess.StartAsync(await KeyspaceAnswers.RestoreIntoKvJournalAsync(snapshot, dir));
            var put = new PutRequest { Key = B("first"), Value = B("v") };
            foreach (var server in new ServerProcess[] { kvj, etcd, back })
                Assert.Equal(2, (await server.Kv.PutAsync(put)).Header.Revision);
        }
        finally
        {
            Paths.DeleteDir(dir);
        }
    }
}
