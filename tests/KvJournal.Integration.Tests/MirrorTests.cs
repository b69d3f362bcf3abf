using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// A cut-over from etcd without downtime: `kvjournal mirror --from URL` imports a running etcd's
/// snapshot, follows its watch and applies each revision at the source's own number while writes
/// keep going to etcd (through a compaction and a kill -9 of the mirror); clients read the mirror
/// and their writes are refused; the cut-over checks every key at the named revision and opens
/// writes, after which resourceVersions taken from etcd before the move keep working.
/// </summary>
public sealed class MirrorTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private static async Task<long> HeadAsync(ServerProcess server) =>
        (await server.Kv.RangeAsync(new RangeRequest { Key = B("m/"), RangeEnd = B("m0"), CountOnly = true, Serializable = true })).Header.Revision;

    private static Task CaughtUpAsync(ServerProcess mirror, long head) =>
        Poll.UntilAsync(() => HeadAsync(mirror), r => r >= head, TimeSpan.FromSeconds(30), $"the mirror at revision {head}");

    // Puts, deletes and txns writing two keys in reverse key order, as a cluster's writers would.
    private static async Task WriteAsync(ServerProcess etcd, int from, int to)
    {
        for (int i = from; i < to; i++)
        {
            if (i % 7 == 0) await etcd.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B($"m/{i % 10}") });
            else if (i % 10 == 3)
                await etcd.Kv.TxnAsync(new TxnRequest
                {
                    Success = { new RequestOp { RequestPut = new PutRequest { Key = B($"m/t{i % 4}b"), Value = B($"t{i}") } }, new RequestOp { RequestPut = new PutRequest { Key = B($"m/t{i % 4}a"), Value = B($"t{i}") } } },
                });
            else await etcd.Kv.PutAsync(new PutRequest { Key = B($"m/{i % 10}"), Value = B($"v{i}") });
        }
    }

    private static RangeRequest All(long revision) => new() { Key = B("m/"), RangeEnd = B("m0"), Revision = revision };

    [Fact]
    public async Task AMirrorFollowsEtcdRevisionForRevisionThroughACompactionAndARestartThenCutsOver()
    {
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        var lease = await new Lease.LeaseClient(etcd.Channel).LeaseGrantAsync(new LeaseGrantRequest { TTL = 600 });
        for (int i = 0; i < 40; i++) await etcd.Kv.PutAsync(new PutRequest { Key = B($"m/{i % 10}"), Value = B($"v{i}"), Lease = i % 5 == 0 ? lease.ID : 0 });
        // An informer's list before the move: its resourceVersion, and an object's.
        var list = await etcd.Kv.RangeAsync(new RangeRequest { Key = B("m/"), RangeEnd = B("m0") });
        long listRv = list.Header.Revision;

        string dataDir = Paths.NewTempDir("mirror");
        var mirror = await KvJournalProcess.StartMirrorAsync(etcd.Endpoint, dataDir);
        try
        {
            await WriteAsync(etcd, 40, 120);
            var lease2 = await new Lease.LeaseClient(etcd.Channel).LeaseGrantAsync(new LeaseGrantRequest { TTL = 300 });
            await etcd.Kv.PutAsync(new PutRequest { Key = B("m/leased"), Value = B("l"), Lease = lease2.ID });
            await etcd.Kv.CompactAsync(new CompactionRequest { Revision = listRv });
            await WriteAsync(etcd, 120, 160);

            long head = await HeadAsync(etcd);
            await CaughtUpAsync(mirror, head);
            for (long rev = listRv; rev <= head; rev++)
                Assert.Equal(KeyspaceAnswers.Kvs(await etcd.Kv.RangeAsync(All(rev))), KeyspaceAnswers.Kvs(await mirror.Kv.RangeAsync(All(rev))));
            var refused = await Assert.ThrowsAsync<RpcException>(() => mirror.Kv.PutAsync(new PutRequest { Key = B("m/x"), Value = B("x") }).ResponseAsync);
            Assert.Equal((StatusCode.FailedPrecondition, "etcdserver: this member mirrors an etcd cluster and takes writes only after its cut-over"), (refused.StatusCode, refused.Status.Detail));

            // kill -9 of the mirror while the source goes on: it resumes from its own revision.
            await mirror.KillAsync();
            await mirror.DisposeAsync();
            await WriteAsync(etcd, 160, 200);
            // 3 MB of revisions to catch up: more than one journal entry holds, so the mirror splits them.
            var big = ByteString.CopyFrom(new byte[10_000]);
            for (int i = 0; i < 300; i++) await etcd.Kv.PutAsync(new PutRequest { Key = B($"m/big{i % 30}"), Value = big });
            mirror = await KvJournalProcess.StartMirrorAsync(etcd.Endpoint, dataDir);
            head = await HeadAsync(etcd);
            await CaughtUpAsync(mirror, head);

            var (status, text) = await mirror.CutOverAsync(head - 1);
            Assert.Equal(409, status);
            Assert.Contains($"the mirror already applied revision {head}", text);
            (status, text) = await mirror.CutOverAsync(head);
            Assert.True(status == 200, text);
            Assert.Contains($"at revision {head}:", text);

            Assert.Equal(KeyspaceAnswers.Kvs(await etcd.Kv.RangeAsync(All(head))), KeyspaceAnswers.Kvs(await mirror.Kv.RangeAsync(All(head))));
            // The informer's resourceVersion from etcd: a watch from it replays what etcd replays.
            Assert.Equal(await KeyspaceAnswers.HistoryAsync(etcd, "m/", "m0", listRv + 1, head), await KeyspaceAnswers.HistoryAsync(mirror, "m/", "m0", listRv + 1, head));
            // An update with an object's resourceVersion read from etcd before the move wins; a stale one reads back.
            var current = (await etcd.Kv.RangeAsync(new RangeRequest { Key = B("m/2") })).Kvs[0];
            var update = new TxnRequest
            {
                Compare = { new Compare { Key = B("m/2"), Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = current.ModRevision } },
                Success = { new RequestOp { RequestPut = new PutRequest { Key = B("m/2"), Value = B("after the move") } } },
                Failure = { new RequestOp { RequestRange = new RangeRequest { Key = B("m/2") } } },
            };
            var moved = await mirror.Kv.TxnAsync(update);
            Assert.True(moved.Succeeded);
            Assert.Equal(head + 1, moved.Header.Revision);
            Assert.False((await mirror.Kv.TxnAsync(update)).Succeeded);
            // Leases are the source's: the same keys, their remaining time, and kept alive here now.
            foreach (long id in new[] { lease.ID, lease2.ID })
            {
                var ttl = new LeaseTimeToLiveRequest { ID = id, Keys = true };
                var theirs = await new Lease.LeaseClient(etcd.Channel).LeaseTimeToLiveAsync(ttl);
                var ours = await new Lease.LeaseClient(mirror.Channel).LeaseTimeToLiveAsync(ttl);
                Assert.Equal((theirs.GrantedTTL, theirs.Keys), (ours.GrantedTTL, ours.Keys));
                Assert.InRange(ours.TTL, theirs.TTL - 30, theirs.TTL);
            }
            var again = await mirror.CutOverAsync(head + 1);
            Assert.Equal((409, "etcdserver: this member is not mirroring an etcd cluster\n"), again);
        }
        finally
        {
            await mirror.DisposeAsync();
            Paths.DeleteDir(dataDir);
        }
    }

    [Fact]
    public async Task AMirrorThatFellBehindTheSourcesCompactionSaysSoAndRefusesToCutOver()
    {
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        await WriteAsync(etcd, 1, 20);
        string dataDir = Paths.NewTempDir("mirror-behind");
        var mirror = await KvJournalProcess.StartMirrorAsync(etcd.Endpoint, dataDir);
        try
        {
            await CaughtUpAsync(mirror, await HeadAsync(etcd));
            await mirror.KillAsync();
            await mirror.DisposeAsync();
            await WriteAsync(etcd, 20, 40);
            long head = await HeadAsync(etcd);
            await etcd.Kv.CompactAsync(new CompactionRequest { Revision = head });

            mirror = await KvJournalProcess.StartMirrorAsync(etcd.Endpoint, dataDir);
            var (status, text) = await Poll.UntilAsync(() => mirror.CutOverAsync(head), r => r.Text.Contains("compacted", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
            Assert.Equal(409, status);
            Assert.Contains("start a new mirror on an empty data dir", text);
            await mirror.WaitForOutputAsync("mirror: cannot follow");
            // It still serves what it has, and still refuses writes.
            Assert.NotEmpty((await mirror.Kv.RangeAsync(new RangeRequest { Key = B("m/"), RangeEnd = B("m0"), Serializable = true })).Kvs);
            await Assert.ThrowsAsync<RpcException>(() => mirror.Kv.PutAsync(new PutRequest { Key = B("m/x"), Value = B("x") }).ResponseAsync);
        }
        finally
        {
            await mirror.DisposeAsync();
            Paths.DeleteDir(dataDir);
        }
    }

    [Fact]
    public async Task AMirrorOfAnEtcdWithAuthFollowsAsItsRootAndCutsOverForAnAdminOnly()
    {
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        var auth = new Auth.AuthClient(etcd.Channel);
        await auth.UserAddAsync(new AuthUserAddRequest { Name = "root", Password = "rootpw" });
        await auth.UserGrantRoleAsync(new AuthUserGrantRoleRequest { User = "root", Role = "root" });
        await auth.UserAddAsync(new AuthUserAddRequest { Name = "alice", Password = "alicepw" });
        await auth.AuthEnableAsync(new AuthEnableRequest());
        var root = new Metadata { { "token", (await auth.AuthenticateAsync(new AuthenticateRequest { Name = "root", Password = "rootpw" })).Token } };
        for (int i = 0; i < 10; i++) await etcd.Kv.PutAsync(new PutRequest { Key = B($"m/{i}"), Value = B($"v{i}") }, root);

        await using var mirror = await KvJournalProcess.StartMirrorAsync(etcd.Endpoint, null, "--from-user", "root:rootpw");
        for (int i = 10; i < 20; i++) await etcd.Kv.PutAsync(new PutRequest { Key = B($"m/{i}"), Value = B($"v{i}") }, root);
        long head = (await etcd.Kv.RangeAsync(new RangeRequest { Key = B("m/"), RangeEnd = B("m0"), CountOnly = true }, root)).Header.Revision;
        var mirrorAuth = new Auth.AuthClient(mirror.Channel);
        string token = (await mirrorAuth.AuthenticateAsync(new AuthenticateRequest { Name = "root", Password = "rootpw" })).Token;
        await Poll.UntilAsync(async () => (await mirror.Kv.RangeAsync(new RangeRequest { Key = B("m/"), RangeEnd = B("m0"), CountOnly = true, Serializable = true }, new Metadata { { "token", token } })).Header.Revision,
            r => r >= head, TimeSpan.FromSeconds(30), "the mirror caught up");

        var anonymous = await mirror.CutOverAsync(head);
        Assert.Equal((403, "etcdserver: user name is empty\n"), anonymous);
        string alice = (await mirrorAuth.AuthenticateAsync(new AuthenticateRequest { Name = "alice", Password = "alicepw" })).Token;
        Assert.Equal((403, "etcdserver: permission denied\n"), await mirror.CutOverAsync(head, alice));
        var (status, text) = await mirror.CutOverAsync(head, token);
        Assert.True(status == 200, text);
        Assert.Contains("20 keys match", text);
        Assert.Equal(head + 1, (await mirror.Kv.PutAsync(new PutRequest { Key = B("m/after"), Value = B("a") }, new Metadata { { "token", token } })).Header.Revision);
    }

    /// <summary>
    /// A mirror into a NATS journal shared with another member: both serve the source's revisions
    /// and refuse writes, and the cut-over (one journal entry) opens writes on both.
    /// </summary>
    [Fact]
    public async Task AMirrorIntoANatsJournalOpensWritesOnEveryMemberAtTheCutOver()
    {
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        await WriteAsync(etcd, 1, 30);
        await using var nats = await NatsCluster.StartAsync();
        await using var mirror = await KvJournalProcess.StartMirrorAsync(etcd.Endpoint, null, "--name", "m0", "--journal-endpoints", nats.Endpoints);
        await using var other = await KvJournalProcess.StartAsync(null, "--name", "m1", "--journal-endpoints", nats.Endpoints);
        await WriteAsync(etcd, 30, 60);
        long head = await HeadAsync(etcd);
        await CaughtUpAsync(mirror, head);
        await CaughtUpAsync(other, head);
        var expected = KeyspaceAnswers.Kvs(await etcd.Kv.RangeAsync(All(head)));
        Assert.Equal(expected, KeyspaceAnswers.Kvs(await other.Kv.RangeAsync(All(head))));
        var refused = await Assert.ThrowsAsync<RpcException>(() => other.Kv.PutAsync(new PutRequest { Key = B("m/x"), Value = B("x") }).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);

        var (status, text) = await mirror.CutOverAsync(head);
        Assert.True(status == 200, text);
        long written = (await other.Kv.PutAsync(new PutRequest { Key = B("m/x"), Value = B("x") })).Header.Revision;
        Assert.Equal(head + 1, written);
        await CaughtUpAsync(mirror, written);
    }
}
