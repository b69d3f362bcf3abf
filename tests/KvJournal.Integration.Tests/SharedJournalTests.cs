using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Health.V1;
using KvJournal.Journal.Nats;
using KvJournal.Member.Propose;
using KvJournal.Protos.Journal;
using KvJournal.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// Several members sharing one journal (a 3-node NATS JetStream stream), all real processes on
/// loopback: any member takes writes, all hold the same data at the same revisions, reads,
/// watches, leases and auth see what went through other members, a late member starts from the
/// snapshot in the journal, and a damaged entry stops every member. The NATS nodes' own faults
/// are in <see cref="NatsJournalTests"/>.
/// </summary>
public sealed class SharedJournalTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private static readonly string Stream = NatsJournal.StreamName("default");

    /// <summary>A NATS cluster and members on it; disposing kills them all and deletes their data.</summary>
    private sealed class Cluster : IAsyncDisposable
    {
        public NatsCluster Nats { get; private set; } = null!;
        public List<KvJournalProcess> Members { get; } = [];

        private string[] _memberArgs = [];

        public static async Task<Cluster> StartAsync(int members, params string[] memberArgs)
        {
            var cluster = new Cluster { _memberArgs = memberArgs, Nats = await NatsCluster.StartAsync() };
            try
            {
                for (int i = 0; i < members; i++) await cluster.AddMemberAsync($"m{i}");
                return cluster;
            }
            catch
            {
                // A member that does not come up must not leave the nats-server nodes and the other members running.
                await cluster.DisposeAsync();
                throw;
            }
        }

        private readonly List<string> _memberDirs = [];
        private readonly Dictionary<KvJournalProcess, string> _names = [];

        /// <summary>Starts a member on the journal; with a <paramref name="dataDir"/> the caller keeps its data, else the cluster does.</summary>
        public async Task<KvJournalProcess> AddMemberAsync(string name, string? dataDir = null)
        {
            if (dataDir is null) _memberDirs.Add(dataDir = Paths.NewTempDir("member"));
            var member = await StartMemberAsync(name, dataDir);
            Members.Add(member);
            return member;
        }

        private async Task<KvJournalProcess> StartMemberAsync(string name, string dataDir)
        {
            var member = await KvJournalProcess.StartAsync(dataDir, ["--name", name, "--journal-endpoints", Nats.Endpoints, .. _memberArgs]);
            _names[member] = name;
            return member;
        }

        /// <summary>kill -9 of member <paramref name="index"/>, then a restart on its data directory (on a new port).</summary>
        public async Task RestartMemberAsync(int index)
        {
            var old = Members[index];
            await old.DisposeAsync();
            Members[index] = await StartMemberAsync(_names[old], old.DataDir);
        }

        /// <summary>kill -9 of every NATS node at once, then a restart of all on their ports and stores.</summary>
        public async Task RestartJournalAsync()
        {
            await Task.WhenAll(Nats.Nodes.Select(Nats.KillAsync));
            await Task.WhenAll(Nats.Nodes.Select(Nats.RestartAsync));
        }

        /// <summary>
        /// Appends entry bytes as they are, each in a message of its own, through the journal client
        /// as a member would (a proposer that is not a member of the cluster).
        /// </summary>
        /// <returns>where the journal put each, as its members' logs name a position</returns>
        public async Task<List<string>> AppendRawAsync(params byte[][] entries)
        {
            var options = new NatsJournalOptions { Servers = [.. Nats.Nodes.Select(n => new Uri(n.Url))], MemberId = 0xfeed, MaxEntryBytes = 1024 };
            await using var journal = await NatsJournal.OpenAsync(options, "default", NullLogger.Instance, CancellationToken.None);
            var positions = new List<string>();
            foreach (var entry in entries) positions.Add(journal.Describe(await journal.AppendAsync(entry)));
            return positions;
        }

        /// <summary>The stream's first and last sequence, once a node reports them.</summary>
        public async Task<(ulong First, ulong Last)> StreamStateAsync() =>
            await Nats.StreamStateAsync(Stream) ?? throw new InvalidOperationException($"no node reports stream {Stream}");

        public async ValueTask DisposeAsync()
        {
            foreach (var m in Members) await m.DisposeAsync();
            await Nats.DisposeAsync();
            foreach (var d in _memberDirs) Paths.DeleteDir(d);
        }
    }

    private static async Task<RangeResponse> All(KvJournalProcess member, bool serializable = false) =>
        await member.Kv.RangeAsync(new RangeRequest { Key = B("\0"), RangeEnd = B("\0"), Serializable = serializable });

    [Fact]
    public async Task ThreeMembersTakeWritesAndHoldIdenticalData()
    {
        await using var cluster = await Cluster.StartAsync(3);
        var m = cluster.Members;
        for (int i = 0; i < 30; i++)
        {
            var member = m[i % 3];
            await member.Kv.PutAsync(new PutRequest { Key = B($"k/{i:D2}"), Value = B($"v{i}") });
        }
        var txn = await m[1].Kv.TxnAsync(new TxnRequest
        {
            Compare = { new Compare { Key = B("k/00"), Target = Compare.Types.CompareTarget.Version, Result = Compare.Types.CompareResult.Equal, Version = 1 } },
            Success = { new RequestOp { RequestPut = new PutRequest { Key = B("k/00"), Value = B("txn") } }, new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = B("k/01") } } },
        });
        Assert.True(txn.Succeeded);
        Assert.Equal(32, txn.Header.Revision); // 1 + 30 puts + the txn

        var ranges = await Task.WhenAll(m.Select(x => All(x)));
        var headers = ranges.Select(r => r.Header).ToList();
        Assert.All(ranges, r => Assert.Equal(32, r.Header.Revision));
        Assert.All(ranges, r => Assert.Equal(ranges[0].Kvs, r.Kvs));
        Assert.Equal(29, ranges[0].Kvs.Count);
        Assert.Equal(3, headers.Select(h => h.MemberId).Distinct().Count());
        Assert.Single(headers.Select(h => h.ClusterId).Distinct());

        var hashes = await Task.WhenAll(m.Select(x => new Maintenance.MaintenanceClient(x.Channel).HashKVAsync(new HashKVRequest { Revision = 32 }).ResponseAsync));
        Assert.Single(hashes.Select(h => h.Hash).Distinct());
        // Every member lists all three, and they agree on one leader among them.
        foreach (var x in m)
        {
            var list = await new Etcdserverpb.Cluster.ClusterClient(x.Channel).MemberListAsync(new MemberListRequest { Linearizable = true });
            Assert.Equal(3, list.Members.Count);
            Assert.Equal(["m0", "m1", "m2"], list.Members.Select(mm => mm.Name).Order());
        }
        var leaders = await Task.WhenAll(m.Select(x => new Maintenance.MaintenanceClient(x.Channel).StatusAsync(new Etcdserverpb.StatusRequest()).ResponseAsync));
        Assert.Single(leaders.Select(s => s.Leader).Distinct());
        Assert.Contains(leaders[0].Leader, headers.Select(h => h.MemberId));
    }

    [Fact]
    public async Task LinearizableReadsSeeWritesMadeThroughOtherMembers()
    {
        await using var cluster = await Cluster.StartAsync(3);
        var m = cluster.Members;
        for (int i = 0; i < 60; i++)
        {
            var writer = m[i % 3];
            var reader = m[(i + 1) % 3];
            var put = await writer.Kv.PutAsync(new PutRequest { Key = B("ryw"), Value = B($"v{i}") });
            var got = await reader.Kv.RangeAsync(new RangeRequest { Key = B("ryw") });
            Assert.Equal($"v{i}", got.Kvs[0].Value.ToStringUtf8());
            Assert.True(got.Header.Revision >= put.Header.Revision);
        }
    }

    [Fact]
    public async Task AWatchOnOneMemberSeesWritesThroughTheOthersInOrder()
    {
        await using var cluster = await Cluster.StartAsync(3);
        var m = cluster.Members;
        await using var watch = new WatchSession(m[1].Channel, requireLeader: true);
        var created = await watch.WatchAsync(WatchSession.Create("w/", WatchSession.PrefixEnd("w/"), prevKv: true));
        Assert.True(created.Created);

        var revisions = new List<long>();
        for (int i = 0; i < 20; i++)
        {
            var r = await m[i % 2 == 0 ? 0 : 2].Kv.PutAsync(new PutRequest { Key = B($"w/{i % 5}"), Value = B($"v{i}") });
            revisions.Add(r.Header.Revision);
        }
        var seen = new List<long>();
        while (seen.Count < revisions.Count)
        {
            var response = await watch.NextAsync(TimeSpan.FromSeconds(10));
            foreach (var e in response.Events)
            {
                seen.Add(e.Kv.ModRevision);
                if (e.Kv.Version > 1) Assert.NotNull(e.PrevKv);
            }
        }
        Assert.Equal(revisions, seen);
    }

    [Fact]
    public async Task LeasesAreSharedKeepAlivesThroughOneMemberCountOnAllAndExpiryHappensOnce()
    {
        await using var cluster = await Cluster.StartAsync(2);
        var m = cluster.Members;
        var leases = m.Select(x => new Lease.LeaseClient(x.Channel)).ToArray();
        var kept = await leases[0].LeaseGrantAsync(new LeaseGrantRequest { TTL = 2 });
        var expiring = await leases[1].LeaseGrantAsync(new LeaseGrantRequest { TTL = 2 });
        await m[0].Kv.PutAsync(new PutRequest { Key = B("lease/kept"), Value = B("1"), Lease = kept.ID });
        var put = await m[1].Kv.PutAsync(new PutRequest { Key = B("lease/expiring"), Value = B("1"), Lease = expiring.ID });
        await using var watch = new WatchSession(m[0].Channel);
        await watch.WatchAsync(WatchSession.Create("lease/", WatchSession.PrefixEnd("lease/"), startRevision: put.Header.Revision + 1, prevKv: true));

        // Keep-alives through member 1 for a lease granted through member 0, across several TTLs;
        // both members run expiry, and the other lease expires once.
        using var keepAlive = leases[1].LeaseKeepAlive();
        var deleted = new List<Mvccpb.Event>();
        var until = DateTime.UtcNow.AddSeconds(6);
        while (DateTime.UtcNow < until)
        {
            await keepAlive.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = kept.ID });
            Assert.True(await keepAlive.ResponseStream.MoveNext(CancellationToken.None));
            Assert.True(keepAlive.ResponseStream.Current.TTL > 0);
            while (watch.TryNext(out var r)) deleted.AddRange(r.Events);
            await Task.Delay(500); // the client's keep-alive period, as clientv3 sends them at TTL/3
        }
        await keepAlive.RequestStream.CompleteAsync();
        while (watch.TryNext(out var r)) deleted.AddRange(r.Events);
        var only = Assert.Single(deleted);
        Assert.Equal(Mvccpb.Event.Types.EventType.Delete, only.Type);
        Assert.Equal("lease/expiring", only.Kv.Key.ToStringUtf8());
        Assert.Equal(put.Header.Revision + 1, only.Kv.ModRevision); // one revision for the expiry, proposed by both members
        foreach (var x in m)
        {
            var left = await x.Kv.RangeAsync(new RangeRequest { Key = B("lease/"), RangeEnd = B(WatchSession.PrefixEnd("lease/")) });
            Assert.Equal(["lease/kept"], left.Kvs.Select(kv => kv.Key.ToStringUtf8()));
            Assert.Equal(put.Header.Revision + 1, left.Header.Revision);
        }
    }

    /// <summary>
    /// Lease expiry (and the other one-doer duties) run on the member reported as leader; when it is
    /// killed, the survivors agree on the next one within a few heartbeats, and leases due meanwhile
    /// expire once each.
    /// </summary>
    [Fact]
    public async Task WhenTheLeaderIsKilledAnotherTakesOverAndLeasesStillExpireOnce()
    {
        await using var cluster = await Cluster.StartAsync(3);
        var m = cluster.Members;
        var statuses = await Task.WhenAll(m.Select(x => new Maintenance.MaintenanceClient(x.Channel).StatusAsync(new Etcdserverpb.StatusRequest()).ResponseAsync));
        ulong leaderId = Assert.Single(statuses.Select(st => st.Leader).Distinct());
        var leader = m[Array.FindIndex(statuses, st => st.Header.MemberId == leaderId)];
        var survivors = m.Where(x => x != leader).ToList();

        var lease = new Lease.LeaseClient(survivors[0].Channel);
        long start = 0;
        for (int i = 0; i < 20; i++)
        {
            var granted = await lease.LeaseGrantAsync(new LeaseGrantRequest { TTL = 3 });
            var put = await survivors[0].Kv.PutAsync(new PutRequest { Key = B($"expire/{i:D2}"), Value = B("v"), Lease = granted.ID });
            if (start == 0) start = put.Header.Revision;
        }
        await using var watch = new WatchSession(survivors[1].Channel);
        await watch.WatchAsync(WatchSession.Create("expire/", WatchSession.PrefixEnd("expire/"), startRevision: start));
        await leader.KillAsync();

        // The survivors name one live leader, bounded in time.
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            var now = await Task.WhenAll(survivors.Select(x => new Maintenance.MaintenanceClient(x.Channel).StatusAsync(new Etcdserverpb.StatusRequest()).ResponseAsync));
            if (now.All(st => st.Leader != leaderId && st.Leader == now[0].Leader) && survivors.Any(x => now.Any(st => st.Header.MemberId == now[0].Leader))) break;
            Assert.True(DateTime.UtcNow < deadline, $"no live leader agreed on 20 s after kill -9 of leader {leaderId:x}: {string.Join(", ", now.Select(st => $"{st.Header.MemberId:x} says {st.Leader:x}"))}");
            await Task.Delay(200);
        }

        var deletes = new List<string>();
        var events = new List<Mvccpb.Event>();
        while (deletes.Count < 20)
        {
            foreach (var e in (await watch.NextAsync(TimeSpan.FromSeconds(30))).Events)
            {
                events.Add(e);
                if (e.Type == Mvccpb.Event.Types.EventType.Delete) deletes.Add(e.Kv.Key.ToStringUtf8());
            }
        }
        Assert.Equal(20, deletes.Distinct().Count());
        await survivors[0].Kv.PutAsync(new PutRequest { Key = B("expire-fence"), Value = B("v") });
        while (watch.TryNext(out var more)) events.AddRange(more.Events);
        Assert.Equal(20, events.Count(e => e.Type == Mvccpb.Event.Types.EventType.Delete)); // once each
    }

    [Fact]
    public async Task AnEntryTheJournalHoldsTwiceIsAppliedOnce()
    {
        await using var cluster = await Cluster.StartAsync(2);
        var m = cluster.Members;
        var before = await m[0].Kv.PutAsync(new PutRequest { Key = B("once/marker"), Value = B("x") });
        await using var watch = new WatchSession(m[1].Channel);
        await watch.WatchAsync(WatchSession.Create("once/", WatchSession.PrefixEnd("once/"), startRevision: before.Header.Revision + 1));

        // What a proposer's retried append leaves behind when the server's duplicate window has
        // passed: the same entry (proposer and request id) in three messages.
        byte[] entry = JournalEntryCodec.Encode(new JournalEntry { MemberId = 0xfeed, RequestId = 42, Put = new PutRequest { Key = B("once/k"), Value = B("v") } });
        await cluster.AppendRawAsync(entry, entry, entry);

        var after = await m[0].Kv.PutAsync(new PutRequest { Key = B("once/after"), Value = B("y") });
        Assert.Equal(before.Header.Revision + 2, after.Header.Revision); // one revision for three copies
        foreach (var x in m)
        {
            var k = await x.Kv.RangeAsync(new RangeRequest { Key = B("once/k") });
            Assert.Equal(1, k.Kvs[0].Version);
            Assert.Equal(before.Header.Revision + 1, k.Kvs[0].ModRevision);
        }
        var events = new List<Mvccpb.Event>();
        while (events.Count < 2) events.AddRange((await watch.NextAsync(TimeSpan.FromSeconds(10))).Events);
        Assert.Equal(["once/k", "once/after"], events.Select(e => e.Kv.Key.ToStringUtf8()));
    }

    [Fact]
    public async Task ADamagedEntryStopsEveryMemberWhichThenProposesNothingAndSaysSoOnLivezAndGrpcHealth()
    {
        await using var cluster = await Cluster.StartAsync(2);
        var m = cluster.Members;
        await m[0].Kv.PutAsync(new PutRequest { Key = B("sound"), Value = B("v") });
        // gRPC health watchers (a load balancer's) hear SERVING now and NOT_SERVING at the stop.
        var healthWatches = new List<AsyncServerStreamingCall<HealthCheckResponse>>();
        foreach (var member in m)
        {
            var watch = new Health.HealthClient(member.Channel).Watch(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddMinutes(1));
            healthWatches.Add(watch);
            Assert.True(await watch.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, watch.ResponseStream.Current.Status);
        }

        // An entry whose bytes changed after they were framed: its checksum no longer matches.
        byte[] damaged = JournalEntryCodec.Encode(new JournalEntry { MemberId = 0xbad, RequestId = 1, Put = new PutRequest { Key = B("damaged"), Value = B("v") } });
        damaged[^1] ^= 0x40;
        string at = (await cluster.AppendRawAsync(damaged))[0];

        // Each member stops once its applier reaches the damaged entry (a write before that still goes through).
        foreach (var member in m)
        {
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (true)
            {
                var outcome = await Responses.CaptureAsync(() => member.Kv.PutAsync(new PutRequest { Key = B("before-stop"), Value = B("v") }, deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync);
                if (outcome.Detail == "etcdserver: server stopped") break;
                Assert.True(DateTime.UtcNow < deadline, $"still not stopped: {outcome}");
            }
        }
        var tail = await cluster.StreamStateAsync();

        foreach (var member in m)
        {
            // Fail-stop: a write is refused at once (never appended for the others to apply), /livez says why.
            var clock = Stopwatch.StartNew();
            var refused = await Assert.ThrowsAsync<RpcException>(() => member.Kv.PutAsync(new PutRequest { Key = B("after"), Value = B("v") }, deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync);
            Assert.Equal((StatusCode.Unavailable, "etcdserver: server stopped"), (refused.StatusCode, refused.Status.Detail));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"the refusal took {clock.Elapsed}");
            var livez = await Curl.GetAsync($"http://{member.Endpoint}/livez?verbose");
            Assert.Equal(503, livez.Status);
            Assert.Contains("serializable_read failed: apply stopped", livez.Body);
            Assert.Equal(503, (await Curl.GetAsync($"http://{member.Endpoint}/readyz")).Status);
            await member.WaitForOutputAsync($"journal entry at {at} is damaged: checksum mismatch");
            var health = await new Health.HealthClient(member.Channel).CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(10));
            Assert.Equal(HealthCheckResponse.Types.ServingStatus.NotServing, health.Status);
        }
        foreach (var watch in healthWatches)
        {
            Assert.True(await watch.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(HealthCheckResponse.Types.ServingStatus.NotServing, watch.ResponseStream.Current.Status);
            watch.Dispose();
        }
        Assert.Equal(tail, await cluster.StreamStateAsync());
    }

    [Fact]
    public async Task AuthStateIsSharedByMembersAndSurvivesRestartAndSnapshots()
    {
        await using var cluster = await Cluster.StartAsync(2, "--snapshot-count", "10");
        var (m0, m1) = (cluster.Members[0], cluster.Members[1]);
        var admin = new Auth.AuthClient(m0.Channel);
        await admin.UserAddAsync(new AuthUserAddRequest { Name = "root", Password = "rootpw" });
        await admin.UserGrantRoleAsync(new AuthUserGrantRoleRequest { User = "root", Role = "root" });
        await admin.UserAddAsync(new AuthUserAddRequest { Name = "alice", Password = "alicepw" });
        await admin.RoleAddAsync(new AuthRoleAddRequest { Name = "apps" });
        await admin.RoleGrantPermissionAsync(new AuthRoleGrantPermissionRequest
        {
            Name = "apps",
            Perm = new Authpb.Permission { PermType = Authpb.Permission.Types.Type.Readwrite, Key = B("/a/"), RangeEnd = B("/a0") },
        });
        await admin.UserGrantRoleAsync(new AuthUserGrantRoleRequest { User = "alice", Role = "apps" });
        await admin.AuthEnableAsync(new AuthEnableRequest());

        // A token issued by one member is honoured by the other: the login is a journal entry.
        string token = (await admin.AuthenticateAsync(new AuthenticateRequest { Name = "alice", Password = "alicepw" })).Token;
        var asAlice = new Metadata { { "token", token } };
        for (int i = 0; i < 15; i++) await m1.Kv.PutAsync(new PutRequest { Key = B($"/a/{i}"), Value = B("v") }, asAlice); // past a state snapshot
        var denied = await Assert.ThrowsAsync<RpcException>(() => m1.Kv.PutAsync(new PutRequest { Key = B("/b/1"), Value = B("v") }, asAlice).ResponseAsync);
        Assert.Equal((StatusCode.PermissionDenied, "etcdserver: permission denied"), (denied.StatusCode, denied.Status.Detail));
        var anonymous = await Assert.ThrowsAsync<RpcException>(() => m1.Kv.RangeAsync(new RangeRequest { Key = B("/a/1") }).ResponseAsync);
        Assert.Equal((StatusCode.InvalidArgument, "etcdserver: user name is empty"), (anonymous.StatusCode, anonymous.Status.Detail));
        var forged = await Assert.ThrowsAsync<RpcException>(() => m1.Kv.RangeAsync(new RangeRequest { Key = B("/a/1") }, new Metadata { { "token", "forged.1" } }).ResponseAsync);
        Assert.Equal((StatusCode.Unauthenticated, "etcdserver: invalid auth token"), (forged.StatusCode, forged.Status.Detail));

        // A restarted member and a brand-new one hold the same users and permissions; the journal was
        // trimmed below a state snapshot first, so the new one can only have them from the snapshot.
        await Poll.UntilAsync(cluster.StreamStateAsync, s => s.First > 1, TimeSpan.FromSeconds(60));
        await cluster.RestartMemberAsync(1);
        var late = await cluster.AddMemberAsync("late");
        foreach (var member in new[] { cluster.Members[1], late })
        {
            var auth = new Auth.AuthClient(member.Channel);
            string again = (await auth.AuthenticateAsync(new AuthenticateRequest { Name = "alice", Password = "alicepw" })).Token;
            var read = await member.Kv.RangeAsync(new RangeRequest { Key = B("/a/"), RangeEnd = B("/a0"), CountOnly = true }, new Metadata { { "token", again } });
            Assert.Equal(15, read.Count);
            var refused = await Assert.ThrowsAsync<RpcException>(() => member.Kv.RangeAsync(new RangeRequest { Key = B("/b/") }, new Metadata { { "token", again } }).ResponseAsync);
            Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
            var wrong = await Assert.ThrowsAsync<RpcException>(() => auth.AuthenticateAsync(new AuthenticateRequest { Name = "alice", Password = "nope" }).ResponseAsync);
            Assert.Equal((StatusCode.InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"), (wrong.StatusCode, wrong.Status.Detail));
        }
    }

    [Fact]
    public async Task EtcdctlWithAllMembersKeepsWorkingWhenOneIsKilled()
    {
        await using var cluster = await Cluster.StartAsync(3);
        string endpoints = string.Join(",", cluster.Members.Select(x => x.Endpoint));
        var put = await Etcdctl.RunAsync(endpoints, null, "put", "failover", "before");
        Assert.Equal(0, put.ExitCode);
        await cluster.Members[0].KillAsync();
        for (int i = 0; i < 5; i++)
        {
            var again = await Etcdctl.RunAsync(endpoints, null, "put", "failover", $"after{i}");
            Assert.True(again.ExitCode == 0, again.Stderr);
            var get = await Etcdctl.RunAsync(endpoints, null, "get", "failover", "--print-value-only");
            Assert.True(get.ExitCode == 0, get.Stderr);
            Assert.Equal($"after{i}", get.Stdout.Trim());
        }
    }

    [Fact]
    public async Task ALateMemberStartsFromTheSnapshotInTheJournalAndMatchesTheOthers()
    {
        await using var cluster = await Cluster.StartAsync(3, "--snapshot-count", "300");
        var m = cluster.Members;
        // History worth comparing: overwrites, deletes, a lease with keys, a compaction.
        var lease = await new Lease.LeaseClient(m[0].Channel).LeaseGrantAsync(new LeaseGrantRequest { TTL = 3600 });
        await Task.WhenAll(Enumerable.Range(0, 3).Select(w => Task.Run(async () =>
        {
            for (int i = 0; i < 400; i++)
            {
                string key = $"late/{w}/{i % 120:D3}";
                if (i % 7 == 6) await m[w].Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B(key) });
                else await m[w].Kv.PutAsync(new PutRequest { Key = B(key), Value = B($"v{i}"), Lease = i % 10 == 0 ? lease.ID : 0 });
            }
        })));
        await m[1].Kv.CompactAsync(new CompactionRequest { Revision = 100 });

        // The journal keeps the leader's snapshot and is trimmed below it: a member can no longer
        // rebuild from the journal alone.
        await Poll.UntilAsync(cluster.StreamStateAsync, s => s.First > 1, TimeSpan.FromSeconds(60));
        for (int i = 0; i < 50; i++) await m[2].Kv.PutAsync(new PutRequest { Key = B($"late/after/{i}"), Value = B("x") });

        string keptDir = Paths.NewTempDir("late-member");
        try
        {
            var late = await cluster.AddMemberAsync("m3", keptDir);
            var ready = await Curl.GetAsync($"http://{late.Endpoint}/readyz");
            Assert.Equal(200, ready.Status);
            var head = await m[0].Kv.PutAsync(new PutRequest { Key = B("late/last"), Value = B("x") });
            long revision = head.Header.Revision;
            var ranges = await Task.WhenAll(cluster.Members.Select(x => All(x)));
            Assert.All(ranges, r => Assert.Equal(ranges[0].Kvs, r.Kvs));
            foreach (long at in new[] { revision, 100, 400 })
            {
                var hashes = await Task.WhenAll(cluster.Members.Select(x => new Maintenance.MaintenanceClient(x.Channel).HashKVAsync(new HashKVRequest { Revision = at }).ResponseAsync));
                Assert.Single(hashes.Select(h => h.Hash).Distinct());
            }
            var ttl = await new Lease.LeaseClient(late.Channel).LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = lease.ID, Keys = true });
            var ttl0 = await new Lease.LeaseClient(m[0].Channel).LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = lease.ID, Keys = true });
            Assert.Equal(ttl0.Keys.Select(k => k.ToStringUtf8()).Order(), ttl.Keys.Select(k => k.ToStringUtf8()).Order());
            Assert.NotEmpty(ttl.Keys);

            // The watch history survives the snapshot: a watch from a retained revision replays the
            // same events, in the same order, on the late member as on an old one.
            var replays = await Task.WhenAll(new[] { m[0], late }.Select(x => ReplayAsync(x, from: 101, count: 200)));
            Assert.Equal(replays[0], replays[1]);

            // A kill -9 and restart of the late member starts from its journal snapshot again.
            await late.KillAsync();
            cluster.Members.Remove(late);
            await late.DisposeAsync();
            var again = await cluster.AddMemberAsync("m3", keptDir);
            var after = await All(again);
            Assert.Equal((await All(m[0])).Kvs, after.Kvs);
            Assert.Equal(ranges[3].Header.MemberId, after.Header.MemberId); // the same member: its id is kept in its data dir
        }
        finally
        {
            foreach (var x in cluster.Members.ToList()) if (x.DataDir == keptDir) { await x.DisposeAsync(); cluster.Members.Remove(x); }
            Paths.DeleteDir(keptDir);
        }
    }

    /// <summary>
    /// Puts, gets and compare-and-swaps from six clients through all three members while members
    /// and every NATS node at once are killed with kill -9 and restarted; the observed history must be
    /// linearizable against the server's own write history (RegisterHistory).
    /// </summary>
    [Fact]
    public async Task HistoryUnderKill9OfMembersAndOfEveryNatsNodeIsLinearizable()
    {
        await using var cluster = await Cluster.StartAsync(3);
        var workload = new KvJournal.Testing.Linearizability.RegisterWorkload(m => cluster.Members[m].Kv, 3, "lin/");
        workload.Start();
        await workload.AckedAsync(100);
        await cluster.RestartMemberAsync(1);
        await workload.AckedAsync(250);
        await cluster.RestartJournalAsync();
        await workload.AckedAsync(400);
        await cluster.RestartMemberAsync(2);
        await workload.AckedAsync(550);
        await cluster.RestartJournalAsync();
        await workload.AckedAsync(700);
        await cluster.RestartMemberAsync(0);
        await workload.FinishAsync();
        await RetryUntilAsync(() => cluster.Members[0].Kv.RangeAsync(new RangeRequest { Key = B("lin/"), CountOnly = true }).ResponseAsync, TimeSpan.FromSeconds(30));
        var problems = await workload.CheckAsync(cluster.Members);
        Assert.True(problems.Count == 0, $"{problems.Count} violations in {workload.Ops.Count} ops, e.g.:\n{string.Join("\n", problems.Take(10))}");
    }

    // The first count events a watch from a revision replays, as "revision type key value" lines.
    private static async Task<List<string>> ReplayAsync(KvJournalProcess member, long from, int count)
    {
        await using var watch = new WatchSession(member.Channel);
        await watch.WatchAsync(WatchSession.Create("late/", WatchSession.PrefixEnd("late/"), startRevision: from, prevKv: true));
        var events = new List<string>();
        while (events.Count < count)
        {
            foreach (var e in (await watch.NextAsync(TimeSpan.FromSeconds(10))).Events)
                events.Add($"{e.Kv.ModRevision} {e.Type} {e.Kv.Key.ToStringUtf8()} {e.Kv.Value.ToStringUtf8()} {e.PrevKv?.ModRevision}");
        }
        return events.Take(count).ToList();
    }

    // Retries a call until it succeeds (the journal is coming back), bounded by a deadline.
    private static async Task<T> RetryUntilAsync<T>(Func<Task<T>> call, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            try
            {
                return await call();
            }
            catch (RpcException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50); // the member reconnects on its own backoff; nothing to await on the wire
            }
        }
    }
}
