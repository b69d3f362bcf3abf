using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// Moving in from etcd with every revision kept: a workload on the reference etcd, `etcdctl
/// snapshot save`, `kvjournal snapshot restore` into a new data dir, a member started on it; then
/// both answer the same at every retained revision, replay the same watch history, hold the same
/// leases, let the same users in, and give the next write the same revision.
/// </summary>
public sealed class EtcdImportTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private static async Task<string> SaveAndRestoreAsync(ReferenceEtcdProcess etcd, params string[] credentials)
    {
        string dir = Paths.NewTempDir("etcd-import");
        return await KeyspaceAnswers.RestoreIntoKvJournalAsync(await KeyspaceAnswers.SaveSnapshotAsync(etcd, dir, credentials), dir);
    }

    [Fact]
    public async Task AnImportedSnapshotAnswersAsEtcdAtEveryRetainedRevisionAndGoesOnFromItsRevision()
    {
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        var leases = new Lease.LeaseClient(etcd.Channel);
        var lease = await leases.LeaseGrantAsync(new LeaseGrantRequest { TTL = 900 });
        for (int i = 0; i < 60; i++) await etcd.Kv.PutAsync(new PutRequest { Key = B($"k/{i % 20}"), Value = B($"v{i}"), Lease = i % 7 == 0 ? lease.ID : 0 });
        await etcd.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B("k/3") });
        await etcd.Kv.TxnAsync(new TxnRequest
        {
            Success = { new RequestOp { RequestPut = new PutRequest { Key = B("k/t1"), Value = B("a") } }, new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = B("k/4") } }, new RequestOp { RequestPut = new PutRequest { Key = B("k/t2"), Value = B("b") } } },
        });
        long compactAt = (await etcd.Kv.PutAsync(new PutRequest { Key = B("k/5"), Value = B("before compaction") })).Header.Revision;
        await etcd.Kv.CompactAsync(new CompactionRequest { Revision = compactAt - 20 });
        for (int i = 0; i < 15; i++) await etcd.Kv.PutAsync(new PutRequest { Key = B($"k/{i}"), Value = B($"after{i}") });
        await etcd.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B("k/1"), RangeEnd = B("k/2") });
        long head = (await etcd.Kv.RangeAsync(new RangeRequest { Key = B("k/") })).Header.Revision;

        string dataDir = await SaveAndRestoreAsync(etcd);
        await using var kvj = await KvJournalProcess.StartAsync(dataDir);
        try
        {
            // Every retained revision, and the compacted one below them.
            for (long rev = compactAt - 20; rev <= head; rev++)
            {
                var request = new RangeRequest { Key = B("k/"), RangeEnd = B("k0"), Revision = rev };
                Assert.Equal(KeyspaceAnswers.Kvs(await etcd.Kv.RangeAsync(request)), KeyspaceAnswers.Kvs(await kvj.Kv.RangeAsync(request)));
            }
            var below = new RangeRequest { Key = B("k/"), RangeEnd = B("k0"), Revision = compactAt - 21 };
            var theirs = await Assert.ThrowsAsync<RpcException>(() => etcd.Kv.RangeAsync(below).ResponseAsync);
            var ours = await Assert.ThrowsAsync<RpcException>(() => kvj.Kv.RangeAsync(below).ResponseAsync);
            Assert.Equal(theirs.Status.Detail, ours.Status.Detail);

            // A watch from just above the compaction replays the same history.
            var kvjHistory = await KeyspaceAnswers.HistoryAsync(kvj, "k/", "k0", compactAt - 19, head);
            var etcdHistory = await KeyspaceAnswers.HistoryAsync(etcd, "k/", "k0", compactAt - 19, head);
            Assert.Equal(etcdHistory, kvjHistory);

            // The same leases, with their keys and granted TTL (a restored lease's deadline starts again).
            var ttl = new LeaseTimeToLiveRequest { ID = lease.ID, Keys = true };
            var etcdLease = await leases.LeaseTimeToLiveAsync(ttl);
            var kvjLease = await new Lease.LeaseClient(kvj.Channel).LeaseTimeToLiveAsync(ttl);
            Assert.Equal(etcdLease.GrantedTTL, kvjLease.GrantedTTL);
            Assert.Equal(etcdLease.Keys, kvjLease.Keys);
            Assert.InRange(kvjLease.TTL, 800, 900);

            // And the next write gets etcd's next revision.
            var next = new PutRequest { Key = B("k/next"), Value = B("v") };
            Assert.Equal((await etcd.Kv.PutAsync(next)).Header.Revision, (await kvj.Kv.PutAsync(next)).Header.Revision);
        }
        finally
        {
            Paths.DeleteDir(Path.GetDirectoryName(dataDir)!);
        }
    }

    [Fact]
    public async Task ImportedUsersLogInWithTheirEtcdPasswordsAndKeepTheirPermissions()
    {
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        await KeyspaceAnswers.SetUpUsersAsync(etcd);

        string dataDir = await SaveAndRestoreAsync(etcd, "--user", "root:rootpw");
        await using var kvj = await KvJournalProcess.StartAsync(dataDir);
        try
        {
            foreach (var server in new ServerProcess[] { etcd, kvj })
            {
                await KeyspaceAnswers.AssertUsersAsync(server);
            }
        }
        finally
        {
            Paths.DeleteDir(Path.GetDirectoryName(dataDir)!);
        }
    }

    /// <summary>
    /// Into a NATS journal shared by several members: every member starts from the imported
    /// keyspace at etcd's revisions, and writes go on from etcd's next revision. A second restore
    /// into the same (no longer new) stream is refused.
    /// </summary>
    [Fact]
    public async Task ASnapshotRestoredIntoANatsJournalServesEveryMemberOnIt()
    {
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        for (int i = 0; i < 30; i++) await etcd.Kv.PutAsync(new PutRequest { Key = B($"n/{i % 10}"), Value = B($"v{i}") });
        long past = (await etcd.Kv.PutAsync(new PutRequest { Key = B("n/past"), Value = B("p") })).Header.Revision;
        await etcd.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B("n/0") });
        string dir = Paths.NewTempDir("etcd-import-nats");
        string snapshot = Path.Combine(dir, "etcd.db");
        try
        {
            Assert.Equal(0, (await Etcdctl.RunAsync(etcd.Endpoint, null, "snapshot", "save", snapshot)).ExitCode);
            await using var nats = await NatsCluster.StartAsync();
            var (exit, output) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(90), "snapshot", "restore", snapshot, "--journal-endpoints", nats.Endpoints);
            Assert.True(exit == 0, output);

            await using var m0 = await KvJournalProcess.StartAsync(null, "--name", "m0", "--journal-endpoints", nats.Endpoints);
            await using var m1 = await KvJournalProcess.StartAsync(null, "--name", "m1", "--journal-endpoints", nats.Endpoints);
            var atPast = new RangeRequest { Key = B("n/"), RangeEnd = B("n0"), Revision = past };
            var expected = KeyspaceAnswers.Kvs(await etcd.Kv.RangeAsync(atPast));
            Assert.Equal(expected, KeyspaceAnswers.Kvs(await m0.Kv.RangeAsync(atPast)));
            Assert.Equal(expected, KeyspaceAnswers.Kvs(await m1.Kv.RangeAsync(atPast)));
            var next = new PutRequest { Key = B("n/next"), Value = B("v") };
            long written = (await m0.Kv.PutAsync(next)).Header.Revision;
            Assert.Equal((await etcd.Kv.PutAsync(next)).Header.Revision, written);
            Assert.Equal(written, (await m1.Kv.RangeAsync(new RangeRequest { Key = B("n/next") })).Kvs[0].ModRevision);

            var (again, refusal) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(90), "snapshot", "restore", snapshot, "--journal-endpoints", nats.Endpoints);
            Assert.Equal(1, again);
            Assert.Contains("is not new", refusal);
        }
        finally
        {
            Paths.DeleteDir(dir);
        }
    }
}
