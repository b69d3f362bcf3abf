using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// Members on the replicated journal: a 3-node NATS JetStream cluster (real nats-server
/// processes on loopback, sync_interval always) and kvjournal members on it. No acknowledged
/// write is lost and no revision is given twice when any one node, the stream leader included,
/// is killed with kill -9 under load, or all of them at once; writes resume on their own.
/// </summary>
public sealed class NatsJournalTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private const string Stream = "kvjournal-default";

    private static async Task<List<KvJournalProcess>> MembersAsync(NatsCluster nats, int count, params string[] extra)
    {
        var members = new List<KvJournalProcess>();
        try
        {
            for (int i = 0; i < count; i++)
                members.Add(await KvJournalProcess.StartAsync(null, ["--name", $"m{i}", "--journal-endpoints", nats.Endpoints, .. extra]));
            return members;
        }
        catch
        {
            // The members that did come up stop with the failed start.
            await DisposeAllAsync(members);
            throw;
        }
    }

    private static async Task DisposeAllAsync(IEnumerable<KvJournalProcess> members)
    {
        foreach (var m in members) await m.DisposeAsync();
    }

    // What the members logged, for a failure that needs explaining (a stall after a leader change).
    private static string Logs(IEnumerable<KvJournalProcess> members) =>
        "members' logs:\n" + string.Join("\n", members.Select(m => $"--- {m.Endpoint}:\n{m.Output}"));

    private static async Task<RangeResponse> All(KvJournalProcess member, string prefix) =>
        await member.Kv.RangeAsync(new RangeRequest { Key = B(prefix), RangeEnd = B(WatchSession.PrefixEnd(prefix)) });

    [Fact]
    public async Task AStreamWeakerThanAskedIsRefusedAtStart()
    {
        await using var nats = await NatsCluster.StartAsync();
        // One replica asked first: the stream is made with one.
        await using (var one = await KvJournalProcess.StartAsync(null, "--journal-endpoints", nats.Endpoints, "--journal-replicas", "1"))
        {
            await one.Kv.PutAsync(new PutRequest { Key = B("k"), Value = B("v") });
        }
        var (exitCode, output) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(60),
            KvJournalProcess.MemberArgs(Ports.Free(), Paths.NewTempDir("kvj-weak"), "--journal-endpoints", nats.Endpoints));
        Assert.Equal(1, exitCode);
        Assert.Contains("stream kvjournal-default is weaker than configured: 1 replicas (3 wanted)", output);
    }

    // Writers through every member for the whole test, recording what was acknowledged.
    // Every acknowledged write is on every member at its revision, no revision was given twice,
    // and the members hold one history: the same revision and HashKV over every version.
    private static async Task AssertNothingLostAsync(IReadOnlyList<KvJournalProcess> members, WriteLoad load, string prefix)
    {
        Assert.Equal(load.Acked.Count, load.Acked.Values.Distinct().Count());
        // A write through one member, read linearizably through each: all caught up to the same point.
        PutResponse fence;
        try
        {
            fence = await members[0].Kv.PutAsync(new PutRequest { Key = B("fence"), Value = B("v") });
        }
        catch (RpcException ex)
        {
            // Seen intermittently after a stream leader change: say what the members logged.
            throw new InvalidOperationException($"the fence write after the load failed ({ex.Status.Detail}); {Logs(members)}", ex);
        }
        var hashes = new List<uint>();
        foreach (var member in members)
        {
            await member.Kv.RangeAsync(new RangeRequest { Key = B("fence") });
            hashes.Add((await new Maintenance.MaintenanceClient(member.Channel).HashKVAsync(new HashKVRequest { Revision = fence.Header.Revision })).Hash);
        }
        Assert.Single(hashes.Distinct());
        foreach (var member in members)
        {
            var all = await All(member, prefix);
            var held = all.Kvs.ToDictionary(kv => kv.Key.ToStringUtf8(), kv => kv.ModRevision);
            foreach (var (key, revision) in load.Acked)
                Assert.True(held.TryGetValue(key, out long r) && r == revision, $"{key} acknowledged at revision {revision}, member holds {(held.ContainsKey(key) ? r : "nothing")}");
            Assert.Equal(all.Kvs.Count, all.Kvs.Select(kv => kv.ModRevision).Distinct().Count());
        }
    }

    [Fact]
    public async Task Kill9OfTheStreamLeaderUnderLoadLosesNothingAndWritesResume()
    {
        await using var nats = await NatsCluster.StartAsync();
        var m = await MembersAsync(nats, 3);
        try
        {
            var load = new WriteLoad(m, "leader/");
            await using (load)
            {
                load.Start(12);
                await load.WaitForAcksAsync(500, TimeSpan.FromSeconds(60));
                var leader = await nats.StreamLeaderAsync(Stream) ?? throw new InvalidOperationException("no stream leader");
                await nats.KillAsync(leader);
                // Serializable reads go on meanwhile, from every member.
                foreach (var member in m) await member.Kv.RangeAsync(new RangeRequest { Key = B("leader/"), RangeEnd = B("leader0"), Serializable = true, CountOnly = true });
                await load.WaitForAcksAsync(500, TimeSpan.FromSeconds(30));
                Assert.True(load.LongestGap < TimeSpan.FromSeconds(10), $"no write was acknowledged for {load.LongestGap} after kill -9 of the stream leader; {Logs(m)}");
                await nats.RestartAsync(leader);
                await load.WaitForAcksAsync(200, TimeSpan.FromSeconds(30));
            }
            await AssertNothingLostAsync(m, load, "leader/");
        }
        finally
        {
            await DisposeAllAsync(m);
        }
    }

    [Fact]
    public async Task AGracefulStopOfTheStreamLeaderIsBarelyNoticed()
    {
        await using var nats = await NatsCluster.StartAsync();
        var m = await MembersAsync(nats, 2);
        try
        {
            var load = new WriteLoad(m, "graceful/");
            await using (load)
            {
                load.Start(8);
                await load.WaitForAcksAsync(300, TimeSpan.FromSeconds(60));
                var leader = await nats.StreamLeaderAsync(Stream) ?? throw new InvalidOperationException("no stream leader");
                await nats.StopAsync(leader);
                await load.WaitForAcksAsync(300, TimeSpan.FromSeconds(30));
                // Usually 0.03-1.0 s (5 local runs); a fresh-clone CI run saw 2.02 s. The cause of
                // that one is not pinned: the NATS client's 2 s request timeout and the member's
                // 2 s message-id patience (NatsJournal.MessageIdPatience) both fit. A kill -9 costs 4-9 s.
                Assert.True(load.LongestGap < TimeSpan.FromSeconds(3), $"no write was acknowledged for {load.LongestGap} after a graceful stop of the stream leader; {Logs(m)}");
                await nats.RestartAsync(leader);
            }
            await AssertNothingLostAsync(m, load, "graceful/");
        }
        finally
        {
            await DisposeAllAsync(m);
        }
    }

    [Fact]
    public async Task Kill9OfEveryNodeAtOnceLosesNothingAcknowledged()
    {
        await using var nats = await NatsCluster.StartAsync();
        var m = await MembersAsync(nats, 2, "--journal-request-timeout", "5s");
        try
        {
            var load = new WriteLoad(m, "all/");
            await using (load)
            {
                load.Start(8);
                await load.WaitForAcksAsync(500, TimeSpan.FromSeconds(60));
                await Task.WhenAll(nats.Nodes.Select(nats.KillAsync));
                // With no journal, writes fail once the request timeout passes (never hang).
                var clock = Stopwatch.StartNew();
                var refused = await Assert.ThrowsAsync<RpcException>(() => m[0].Kv.PutAsync(new PutRequest { Key = B("none/x"), Value = B("v") }, deadline: DateTime.UtcNow.AddSeconds(30)).ResponseAsync);
                Assert.Equal((StatusCode.Unavailable, "etcdserver: request timed out, journal unavailable"), (refused.StatusCode, refused.Status.Detail));
                Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(15));
                await Task.WhenAll(nats.Nodes.Select(nats.RestartAsync));
                await load.WaitForAcksAsync(300, TimeSpan.FromSeconds(60));
            }
            await AssertNothingLostAsync(m, load, "all/");
        }
        finally
        {
            await DisposeAllAsync(m);
        }
    }

    [Fact]
    public async Task AMajorityDownFailsWritesAfterTheTimeoutKeepsSerializableReadsAndRecoversWithoutRestart()
    {
        await using var nats = await NatsCluster.StartAsync();
        var m = await MembersAsync(nats, 2, "--journal-request-timeout", "4s");
        try
        {
            var put = await m[0].Kv.PutAsync(new PutRequest { Key = B("majority/a"), Value = B("1") });
            await using var leaderWatch = new WatchSession(m[1].Channel, requireLeader: true);
            await leaderWatch.WatchAsync(WatchSession.Create("majority/", WatchSession.PrefixEnd("majority/")));
            await nats.KillAsync(nats.Nodes[0]);
            await nats.KillAsync(nats.Nodes[1]);
            var clock = Stopwatch.StartNew();
            var refused = await Assert.ThrowsAsync<RpcException>(() => m[1].Kv.PutAsync(new PutRequest { Key = B("majority/b"), Value = B("2") }, deadline: DateTime.UtcNow.AddSeconds(30)).ResponseAsync);
            Assert.Equal((StatusCode.Unavailable, "etcdserver: request timed out, journal unavailable"), (refused.StatusCode, refused.Status.Detail));
            Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(12));
            clock.Restart();
            var linearizable = await Assert.ThrowsAsync<RpcException>(() => m[0].Kv.RangeAsync(new RangeRequest { Key = B("majority/a") }, deadline: DateTime.UtcNow.AddSeconds(30)).ResponseAsync);
            Assert.Equal(StatusCode.Unavailable, linearizable.StatusCode);
            Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(12));
            var local = await m[1].Kv.RangeAsync(new RangeRequest { Key = B("majority/a"), Serializable = true });
            Assert.Equal("1", local.Kvs[0].Value.ToStringUtf8());
            // Calls and watches that require a leader (kube-apiserver's) end with etcd's error.
            var noLeader = await Assert.ThrowsAsync<RpcException>(() => m[1].Kv.RangeAsync(new RangeRequest { Key = B("majority/a"), Serializable = true }, new Metadata { { "hasleader", "true" } }).ResponseAsync);
            Assert.Equal((StatusCode.Unavailable, "etcdserver: no leader"), (noLeader.StatusCode, noLeader.Status.Detail));
            await Assert.ThrowsAnyAsync<Exception>(async () => { while (true) await leaderWatch.NextAsync(TimeSpan.FromSeconds(10)); });
            Assert.Equal("etcdserver: no leader", leaderWatch.EndStatus?.Detail);

            await nats.RestartAsync(nats.Nodes[0]);
            await nats.RestartAsync(nats.Nodes[1]);
            // The members were not restarted: the next write goes through by itself.
            var deadline = DateTime.UtcNow.AddSeconds(60);
            PutResponse? again = null;
            while (again is null)
            {
                try
                {
                    again = await m[1].Kv.PutAsync(new PutRequest { Key = B("majority/c"), Value = B("3") }, deadline: DateTime.UtcNow.AddSeconds(20));
                }
                catch (RpcException) when (DateTime.UtcNow < deadline)
                {
                }
            }
            // majority/b may or may not have landed (its outcome was unknown); its revision is not given twice.
            var all = await All(m[0], "majority/");
            Assert.Equal(all.Kvs.Count, all.Kvs.Select(kv => kv.ModRevision).Distinct().Count());
            Assert.Contains(all.Kvs, kv => kv.Key.ToStringUtf8() == "majority/c" && kv.ModRevision == again.Header.Revision);
            Assert.True(again.Header.Revision > put.Header.Revision);
            await m[1].WaitForOutputAsync("does not answer");
            await m[1].WaitForOutputAsync("answers again");
        }
        finally
        {
            await DisposeAllAsync(m);
        }
    }

    [Fact]
    public async Task APartitionOfTheStreamLeaderAcknowledgesNothingOnItsSideAndLeavesOneHistory()
    {
        await using var lab = await NetworkLab.StartAsync(3);
        await using var nats = await NatsCluster.StartAsync(3, lab);
        var members = new List<KvJournalProcess>();
        try
        {
            // The stream exists once a first member opened it; then one member talks only to its
            // leader (the side that will be cut off) and one only to the other two nodes.
            members.Add(await KvJournalProcess.StartAsync(null, ["--name", "first", "--journal-endpoints", nats.Endpoints]));
            var leader = await nats.StreamLeaderAsync(Stream) ?? throw new InvalidOperationException("no stream leader");
            var others = nats.Nodes.Where(n => n != leader).ToList();
            string[] timeout = ["--journal-request-timeout", "5s"];
            var minority = await KvJournalProcess.StartAsync(null, ["--name", "minority", "--journal-endpoints", leader.Url, .. timeout]);
            var majority = await KvJournalProcess.StartAsync(null, ["--name", "majority", "--journal-endpoints", string.Join(",", others.Select(n => n.Url)), .. timeout]);
            members.AddRange([minority, majority]);

            var load = new WriteLoad([minority, majority], "partition/");
            TimeSpan cut, healed;
            await using (load)
            {
                load.Start(8);
                await load.WaitForAcksAsync(300, TimeSpan.FromSeconds(60));
                await lab.IsolateAsync(leader.Index);
                cut = load.Now;
                // The majority elects a leader and goes on; the cut-off side acknowledges nothing.
                await load.WaitForAcksAsync(300, TimeSpan.FromSeconds(40));
                await Task.Delay(TimeSpan.FromSeconds(3)); // let the cut-off side try for a while
                await lab.HealAsync();
                healed = load.Now;
                await load.WaitForAcksAsync(300, TimeSpan.FromSeconds(60));
            }
            // A publish in flight at the cut may still be acknowledged once; none after a second.
            var duringCut = load.AckTimes.Where(a => a.At > cut + TimeSpan.FromSeconds(1) && a.At < healed).ToList();
            Assert.DoesNotContain(duringCut, a => a.Server == 0);
            Assert.Contains(duringCut, a => a.Server == 1);
            await AssertNothingLostAsync(members, load, "partition/");
        }
        finally
        {
            await DisposeAllAsync(members);
        }
    }

    /// <summary>
    /// Puts, gets and compare-and-swaps from six clients through three members while nats-server
    /// nodes are killed with kill -9 (the stream leader, then a follower), stopped gracefully and
    /// restarted: the history every member's watch replays is the same and linearizable.
    /// </summary>
    [Fact]
    public async Task HistoryUnderNodeFaultsIsLinearizable()
    {
        await using var nats = await NatsCluster.StartAsync();
        var m = await MembersAsync(nats, 3);
        try
        {
            var workload = new KvJournal.Testing.Linearizability.RegisterWorkload(i => m[i].Kv, 3, "lin/");
            workload.Start();
            await workload.AckedAsync(100);
            var leader = await nats.StreamLeaderAsync(Stream) ?? throw new InvalidOperationException("no stream leader");
            await nats.KillAsync(leader);
            await workload.AckedAsync(250);
            await nats.RestartAsync(leader);
            var follower = nats.Nodes.First(n => n != leader);
            await nats.KillAsync(follower);
            await workload.AckedAsync(400);
            await nats.RestartAsync(follower);
            var next = await nats.StreamLeaderAsync(Stream) ?? throw new InvalidOperationException("no stream leader");
            await nats.StopAsync(next);
            await workload.AckedAsync(550);
            await nats.RestartAsync(next);
            await workload.FinishAsync();
            var problems = await workload.CheckAsync(m);
            Assert.True(problems.Count == 0, $"{problems.Count} violations in {workload.Ops.Count} ops, e.g.:\n{string.Join("\n", problems.Take(10))}");
        }
        finally
        {
            await DisposeAllAsync(m);
        }
    }

    // README's authorization block: only the members' user may publish to the journal and use JetStream.
    private const string Authorization = """
        authorization {
          users: [
            { user: kvjournal, password: "s3cret",
              permissions: { publish: ["kvjournal.>", "$JS.API.>", "$JS.ACK.>", "$O.kvjournal-default-snapshots.>"],
                             subscribe: ["_INBOX.>", "$O.kvjournal-default-snapshots.>"] } }
            { user: other, password: "x", permissions: { publish: ["nothing.>"], subscribe: ["_INBOX.>"] } }
          ]
        }
        """;

    [Fact]
    public async Task MembersAuthenticateAndNoOtherUserCanWriteTheJournal()
    {
        await using var nats = await NatsCluster.StartAsync(3, clientConfig: Authorization);
        string secrets = Paths.NewTempDir("nats-secrets");
        try
        {
            string password = Path.Combine(secrets, "password");
            await File.WriteAllTextAsync(password, "s3cret\n");
            await using var member = await KvJournalProcess.StartAsync(null, "--journal-endpoints", nats.Endpoints, "--journal-user", "kvjournal", "--journal-password-file", password);
            var put = await member.Kv.PutAsync(new PutRequest { Key = B("auth/k"), Value = B("v") });

            // Another user reaches the servers but cannot append to the journal or purge it.
            await using (var other = new NATS.Client.Core.NatsConnection(new NATS.Client.Core.NatsOpts
            {
                Url = nats.Nodes[0].Url,
                AuthOpts = new NATS.Client.Core.NatsAuthOpts { Username = "other", Password = "x" },
                RequestTimeout = TimeSpan.FromSeconds(2),
            }))
            {
                var js = new NATS.Client.JetStream.NatsJSContext(other);
                await Assert.ThrowsAnyAsync<NATS.Client.Core.NatsException>(async () => await js.PublishAsync("kvjournal.default", new byte[] { 1, 2, 3, 4, 5, 6 }));
                await Assert.ThrowsAnyAsync<NATS.Client.Core.NatsException>(async () => await js.PurgeStreamAsync(Stream, new NATS.Client.JetStream.Models.StreamPurgeRequest()));
            }
            var after = await member.Kv.PutAsync(new PutRequest { Key = B("auth/k2"), Value = B("v") });
            Assert.Equal(put.Header.Revision + 1, after.Header.Revision);

            // Without credentials a member is refused at start, saying so.
            var (exitCode, output) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(60),
                KvJournalProcess.MemberArgs(Ports.Free(), Paths.NewTempDir("kvj-noauth"), "--journal-endpoints", nats.Endpoints, "--journal-request-timeout", "3s"));
            Assert.Equal(1, exitCode);
            Assert.Contains("cannot reach the NATS servers", output);
        }
        finally
        {
            Paths.DeleteDir(secrets);
        }
    }

    [Fact]
    public async Task MembersReachTheServersOverMutualTlsAndAClientWithoutAnAcceptedCertificateIsRefused()
    {
        var tls = TlsFiles.Create(Paths.NewTempDir("nats-tls"));
        try
        {
            // README's TLS block: clients must present a certificate signed by the CA.
            await using var nats = await NatsCluster.StartAsync(3, clientConfig: $$"""
                tls {
                  cert_file: "{{tls.ServerCert}}"
                  key_file: "{{tls.ServerKey}}"
                  ca_file: "{{tls.CaCert}}"
                  verify: true
                }
                """);
            string endpoints = string.Join(",", nats.Nodes.Select(n => $"tls://127.0.0.1:{n.ClientPort}"));
            await using (var member = await KvJournalProcess.StartAsync(null, "--journal-endpoints", endpoints,
                "--journal-cacert", tls.CaCert, "--journal-cert", tls.ClientCert, "--journal-key", tls.ClientKey))
            {
                var put = await member.Kv.PutAsync(new PutRequest { Key = B("tls/k"), Value = B("v") });
                var got = await member.Kv.RangeAsync(new RangeRequest { Key = B("tls/k") });
                Assert.Equal(put.Header.Revision, got.Kvs[0].ModRevision);
            }
            foreach (string[] credentials in new[]
            {
                new[] { "--journal-cacert", tls.CaCert },                                                    // no client certificate
                ["--journal-cacert", tls.CaCert, "--journal-cert", tls.StrangerCert, "--journal-key", tls.StrangerKey], // another CA's
            })
            {
                var (exitCode, output) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(60),
                    KvJournalProcess.MemberArgs(Ports.Free(), Paths.NewTempDir("kvj-notls"), ["--journal-endpoints", endpoints, "--journal-request-timeout", "3s", .. credentials]));
                Assert.Equal(1, exitCode);
                Assert.Contains("cannot reach the NATS servers", output);
            }
        }
        finally
        {
            Paths.DeleteDir(tls.Dir);
        }
    }

    /// <summary>
    /// Auto-compaction goes on after the journal was away: while there is no journal (no leader)
    /// nothing is proposed, and a failed proposal is logged and retried (one used to end the
    /// compactor for good).
    /// </summary>
    [Fact]
    public async Task AutoCompactionGoesOnAfterTheJournalWasAway()
    {
        await using var nats = await NatsCluster.StartAsync();
        var m = await MembersAsync(nats, 1, "--auto-compaction-retention", "2s", "--journal-request-timeout", "2s");
        try
        {
            var kv = m[0].Kv;
            // Compacted up to a revision: a read just below it is refused.
            async Task CompactedPastAsync(long revision, TimeSpan within)
            {
                var deadline = DateTime.UtcNow + within;
                while (true)
                {
                    await kv.PutAsync(new PutRequest { Key = B("compact/tick"), Value = B("v") }, deadline: DateTime.UtcNow.AddSeconds(20));
                    try
                    {
                        await kv.RangeAsync(new RangeRequest { Key = B("compact/tick"), Revision = revision }, deadline: DateTime.UtcNow.AddSeconds(20));
                    }
                    catch (RpcException ex) when (ex.Status.Detail == "etcdserver: mvcc: required revision has been compacted")
                    {
                        return;
                    }
                    Assert.True(DateTime.UtcNow < deadline, $"revision {revision} still not compacted after {within}");
                    await Task.Delay(200);
                }
            }
            var first = await kv.PutAsync(new PutRequest { Key = B("compact/a"), Value = B("1") });
            await CompactedPastAsync(first.Header.Revision, TimeSpan.FromSeconds(20));

            await kv.PutAsync(new PutRequest { Key = B("compact/b"), Value = B("2") });
            await Task.WhenAll(nats.Nodes.Select(nats.KillAsync));
            await Assert.ThrowsAsync<RpcException>(() => kv.PutAsync(new PutRequest { Key = B("compact/c"), Value = B("3") }, deadline: DateTime.UtcNow.AddSeconds(20)).ResponseAsync);
            await Task.Delay(TimeSpan.FromSeconds(3)); // compaction ticks meanwhile fail
            await Task.WhenAll(nats.Nodes.Select(nats.RestartAsync));

            PutResponse? after = null;
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (after is null)
            {
                try { after = await kv.PutAsync(new PutRequest { Key = B("compact/d"), Value = B("4") }, deadline: DateTime.UtcNow.AddSeconds(20)); }
                catch (RpcException) when (DateTime.UtcNow < deadline) { }
            }
            await CompactedPastAsync(after.Header.Revision, TimeSpan.FromSeconds(30));
        }
        finally
        {
            await DisposeAllAsync(m);
        }
    }

    [Fact]
    public async Task UnreachableServersAreRefusedAtStartWithAClearError()
    {
        var (exitCode, output) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(60),
            KvJournalProcess.MemberArgs(Ports.Free(), Paths.NewTempDir("kvj-nonats"), "--journal-endpoints", $"nats://127.0.0.1:{Ports.Free()}", "--journal-request-timeout", "3s"));
        Assert.Equal(1, exitCode);
        Assert.Contains("cannot reach the NATS servers at nats://127.0.0.1:", output);
    }
}
