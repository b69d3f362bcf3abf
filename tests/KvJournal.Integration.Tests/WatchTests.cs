using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Testing;
using Mvccpb;
using Xunit;
using Filter = Etcdserverpb.WatchCreateRequest.Types.FilterType;

namespace KvJournal.Integration.Tests;

/// <summary>
/// The Watch API over the real wire. Where etcd's answer is deterministic the same scenario runs
/// against kvjournal and the reference etcd and the transcripts must be equal.
/// </summary>
public sealed class WatchTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private static string Json(WatchResponse r) => JsonFormatter.Default.Format(Responses.WithoutMemberFields(r));

    /// <summary>Runs <paramref name="scenario"/> on both servers (started with the same flags) and compares transcripts.</summary>
    private static async Task SameOnBothAsync(Func<ServerProcess, Task<List<string>>> scenario, string[]? kvjArgs = null, string[]? etcdArgs = null)
    {
        await using var kvj = await KvJournalProcess.StartAsync(null, kvjArgs ?? []);
        await using var etcd = await ReferenceEtcdProcess.StartAsync(etcdArgs ?? []);
        var theirs = await scenario(etcd);
        var ours = await scenario(kvj);
        Assert.True(theirs.Count > 0, "the scenario recorded nothing");
        for (int i = 0; i < Math.Min(theirs.Count, ours.Count); i++)
            Assert.True(theirs[i] == ours[i], $"line {i} differs\n etcd:      {theirs[i]}\n kvjournal: {ours[i]}");
        Assert.Equal(theirs.Count, ours.Count);
    }

    [Fact]
    public async Task CreateIdsRefusalsAndCancelMatchEtcd()
    {
        await SameOnBothAsync(async server =>
        {
            var log = new List<string>();
            await server.Kv.PutAsync(new PutRequest { Key = B("k0"), Value = B("v") });
            await using var s = new WatchSession(server.Channel);
            async Task Create(WatchCreateRequest c)
            {
                await s.CreateAsync(c);
                log.Add(Json(await s.NextAsync()));
            }
            await Create(WatchSession.Create("k0"));                      // server-assigned: 0
            await Create(WatchSession.Create("k1"));                      // 1
            await Create(WatchSession.Create("k7", watchId: 7));          // client-chosen
            await Create(WatchSession.Create("k7", watchId: 7));          // duplicate: refused
            await Create(WatchSession.Create("k2"));                      // 2
            await Create(WatchSession.Create("b", rangeEnd: "a"));        // empty range: refused
            await Create(WatchSession.Create("k3", startRevision: -1));   // negative start
            await s.CancelAsync(1);
            log.Add(Json(await s.NextAsync()));
            await s.CancelAsync(99);                                      // unknown id: no answer
            await server.Kv.PutAsync(new PutRequest { Key = B("k0"), Value = B("w") });
            log.Add(Json(await s.NextAsync()));                           // so the next one is k0's event
            await server.Kv.PutAsync(new PutRequest { Key = B("k1"), Value = B("w") });
            await server.Kv.PutAsync(new PutRequest { Key = B("k2"), Value = B("w") });
            log.Add(Json(await s.NextAsync()));                           // k1 was canceled: k2's event
            return log;
        });
    }

    /// <summary>A fixed history mixing puts, deletes, range deletes and multi-op txns, then a compaction.</summary>
    private static async Task<long> WriteHistoryAsync(ServerProcess server, int seed, int ops)
    {
        var rnd = new Random(seed);
        string Key() => $"k{rnd.Next(12)}";
        long rev = 1;
        for (int i = 0; i < ops; i++)
        {
            int kind = rnd.Next(10);
            if (kind < 6)
                rev = (await server.Kv.PutAsync(new PutRequest { Key = B(Key()), Value = B($"v{i}") })).Header.Revision;
            else if (kind < 8)
                rev = (await server.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B(Key()) })).Header.Revision;
            else if (kind < 9)
                rev = (await server.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B("k1"), RangeEnd = B("k3") })).Header.Revision;
            else
            {
                var txn = new TxnRequest();
                txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = B("k10"), Value = B($"t{i}") } });
                txn.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = B("k5") } });
                txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = B("a"), Value = B($"t{i}") } });
                rev = (await server.Kv.TxnAsync(txn)).Header.Revision;
            }
        }
        return rev;
    }

    /// <summary>Events a watcher gets until a progress response; checks no revision is split across responses.</summary>
    private static async Task<List<string>> CatchUpEventsAsync(WatchSession s)
    {
        var (before, _) = await s.ReadUntilProgressAsync(retry: TimeSpan.FromMilliseconds(200));
        var lines = new List<string>();
        var lastRevisionSent = new Dictionary<long, long>();
        foreach (var r in before)
        {
            if (r.Events.Count == 0) continue;
            // A revision never spans two responses of one watcher.
            Assert.NotEqual(lastRevisionSent.GetValueOrDefault(r.WatchId), r.Events[0].Kv.ModRevision);
            lastRevisionSent[r.WatchId] = r.Events[^1].Kv.ModRevision;
            foreach (var e in r.Events) lines.Add($"watch {r.WatchId}: {JsonFormatter.Default.Format(e)}");
        }
        // Watchers of one stream interleave in any order (etcd's own order is a map's); each one's own order is kept.
        return [.. lines.OrderBy(l => l[..l.IndexOf(':', StringComparison.Ordinal)], StringComparer.Ordinal)];
    }

    [Fact]
    public async Task HistoryReplayWithRangesFiltersAndPrevKvMatchesEtcd()
    {
        await SameOnBothAsync(async server =>
        {
            long head = await WriteHistoryAsync(server, seed: 4, ops: 300);
            long compactAt = head / 3;
            await server.Kv.CompactAsync(new CompactionRequest { Revision = compactAt });
            var log = new List<string> { $"head {head}" };
            var specs = new (string Name, WatchCreateRequest Create)[]
            {
                ("prefix k1", WatchSession.Create("k1", WatchSession.PrefixEnd("k1"), startRevision: compactAt, prevKv: true)),
                ("single k10", WatchSession.Create("k10", startRevision: compactAt + 1, prevKv: true)),
                ("from k5", WatchSession.Create("k5", "\0", startRevision: head / 2)),
                ("all keys", WatchSession.Create("\0", "\0", startRevision: head - 40, prevKv: true)),
                ("empty key = all", WatchSession.Create("", "\0", startRevision: head - 10)),
                ("noput", WatchSession.Create("k", WatchSession.PrefixEnd("k"), startRevision: compactAt, prevKv: true, filters: [Filter.Noput])),
                ("nodelete", WatchSession.Create("k", WatchSession.PrefixEnd("k"), startRevision: compactAt, filters: [Filter.Nodelete])),
                ("range k2..k6", WatchSession.Create("k2", "k6", startRevision: head / 2, prevKv: true)),
            };
            foreach (var (name, create) in specs)
            {
                await using var s = new WatchSession(server.Channel);
                await s.WatchAsync(create);
                log.Add($"-- {name}");
                log.AddRange(await CatchUpEventsAsync(s));
            }
            // Several watchers multiplexed on one stream, each with its own range.
            await using (var shared = new WatchSession(server.Channel))
            {
                foreach (var (_, create) in specs) await shared.CreateAsync(create);
                var lines = await CatchUpEventsAsync(shared);
                log.Add("-- all on one stream");
                log.AddRange(lines);
            }
            return log;
        });
    }

    [Fact]
    public async Task LiveEventsAndFutureStartRevisionMatchEtcd()
    {
        await SameOnBothAsync(async server =>
        {
            long head = await WriteHistoryAsync(server, seed: 9, ops: 20);
            await using var s = new WatchSession(server.Channel);
            var log = new List<string>
            {
                Json(await s.WatchAsync(WatchSession.Create("k", WatchSession.PrefixEnd("k"), prevKv: true))),
                Json(await s.WatchAsync(WatchSession.Create("k", WatchSession.PrefixEnd("k"), startRevision: head + 5))),
                Json(await s.WatchAsync(WatchSession.Create("k3", filters: [Filter.Nodelete]))),
            };
            await WriteHistoryAsync(server, seed: 10, ops: 30);
            log.AddRange(await CatchUpEventsAsync(s));
            return log;
        });
    }

    [Fact]
    public async Task CompactedStartRevisionIsCanceledWithTheCompactRevision()
    {
        await SameOnBothAsync(async server =>
        {
            long head = await WriteHistoryAsync(server, seed: 5, ops: 30);
            await server.Kv.CompactAsync(new CompactionRequest { Revision = head - 5 });
            await using var s = new WatchSession(server.Channel);
            var log = new List<string>
            {
                Json(await s.WatchAsync(WatchSession.Create("k", WatchSession.PrefixEnd("k"), startRevision: head - 6, prevKv: true))),
                Json(await s.NextAsync()),
            };
            // Watching from the compaction point itself is allowed. (A fresh stream: etcd keeps a
            // compacted watcher in its stream's table, so that stream never answers progress again.)
            await using var s2 = new WatchSession(server.Channel);
            log.Add(Json(await s2.WatchAsync(WatchSession.Create("k", WatchSession.PrefixEnd("k"), startRevision: head - 5))));
            log.AddRange(await CatchUpEventsAsync(s2));
            return log;
        });
    }

    [Fact]
    public async Task ProgressNotifyIntervalMatchesEtcd()
    {
        await SameOnBothAsync(async server =>
        {
            await WriteHistoryAsync(server, seed: 3, ops: 10);
            await using var s = new WatchSession(server.Channel);
            var log = new List<string>
            {
                Json(await s.WatchAsync(WatchSession.Create("k", WatchSession.PrefixEnd("k"), progressNotify: true))),
                Json(await s.NextAsync()), // the first tick: the current revision, watch id of the watcher
            };
            long put = (await server.Kv.PutAsync(new PutRequest { Key = B("k1"), Value = B("x") })).Header.Revision;
            // A tick may still report the old revision before the event; the event and then a
            // notification at its revision must follow.
            WatchResponse r;
            do r = await s.NextAsync(); while (r.Events.Count == 0 && r.Header.Revision < put);
            log.Add(Json(r));
            do r = await s.NextAsync(); while (r.Header.Revision < put);
            log.Add(Json(r));
            return log;
        }, ["--watch-progress-notify-interval", "300ms"], ["--experimental-watch-progress-notify-interval", "300ms"]);
    }

    [Fact]
    public async Task LargeRevisionIsFragmentedOnlyForWatchersThatAskMatchingEtcd()
    {
        // etcd fragments above max-request-bytes plus its 512 KiB gRPC overhead: with the default
        // 1.5 MiB, one ~1.4 MB txn whose events carry prev_kv (~2.9 MB) is split; without prev_kv it is not.
        await SameOnBothAsync(async server =>
        {
            TxnRequest Write(char fill)
            {
                var txn = new TxnRequest();
                for (int i = 0; i < 120; i++)
                    txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = B($"big{i:D3}"), Value = B(new string(fill, 12_000)) } });
                return txn;
            }
            await server.Kv.TxnAsync(Write('a'));
            await using var s = new WatchSession(server.Channel);
            await s.WatchAsync(WatchSession.Create("big", WatchSession.PrefixEnd("big"), prevKv: true, fragment: true));
            await s.WatchAsync(WatchSession.Create("big", WatchSession.PrefixEnd("big"), prevKv: true));
            await s.WatchAsync(WatchSession.Create("big", WatchSession.PrefixEnd("big"), fragment: true));
            await server.Kv.TxnAsync(Write('b'));
            var (before, _) = await s.ReadUntilProgressAsync(retry: TimeSpan.FromMilliseconds(200));
            var log = new List<string>();
            foreach (var r in before.OrderBy(r => r.WatchId))
            {
                log.Add($"watch {r.WatchId} fragment={r.Fragment} events={r.Events.Count} first={r.Events[0].Kv.Key.ToStringUtf8()}");
                if (r.WatchId != 1) Assert.True(r.Events.Count == 1 || r.CalculateSize() < 2 * 1024 * 1024, "a piece stays under the limit");
            }
            return log;
        });
    }

    [Fact]
    public async Task ProgressRequestIsAnsweredOnlyAfterEveryWatcherCaughtUp()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        // Many revisions, written concurrently so the journal groups them.
        const int revisions = 6000;
        await Parallel.ForAsync(0, revisions, new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, ct) =>
            await kvj.Kv.PutAsync(new PutRequest { Key = B($"p/{i % 500}"), Value = B(new string('x', 200)) }, cancellationToken: ct));

        await using var s = new WatchSession(kvj.Channel);
        await s.CreateAsync(WatchSession.Create("p/", WatchSession.PrefixEnd("p/"), startRevision: 1, prevKv: true));
        await s.CreateAsync(WatchSession.Create("p/1", startRevision: 2));
        await s.RequestProgressAsync(); // sent while both watchers are far behind
        var (before, progressRevision) = await s.ReadUntilProgressAsync();

        // Everything up to the reported revision was delivered before the progress response.
        Assert.True(progressRevision >= revisions + 1, $"progress at {progressRevision}");
        var prefixEvents = before.Where(r => r.WatchId == 0).SelectMany(r => r.Events).ToList();
        Assert.Equal(revisions, prefixEvents.Count);
        Assert.Equal(Enumerable.Range(2, revisions).Select(i => (long)i), prefixEvents.Select(e => e.Kv.ModRevision));
        Assert.All(prefixEvents.Where(e => e.Kv.Version > 1), e => Assert.NotNull(e.PrevKv));
        Assert.Equal(revisions / 500, before.Where(r => r.WatchId == 1).SelectMany(r => r.Events).Count());
    }

    [Fact]
    public async Task SlowWatcherStallsNeitherWritesNorOtherWatchersAndCatchesUpInOrder()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        // Its own connection, as a slow client would have.
        using var slowChannel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://{kvj.Endpoint}", new Grpc.Net.Client.GrpcChannelOptions { MaxReceiveMessageSize = 4 * 1024 * 1024 });
        await using var slow = new WatchSession(slowChannel, readImmediately: false);
        await using var fast = new WatchSession(kvj.Channel);
        await slow.CreateAsync(WatchSession.Create("s/", WatchSession.PrefixEnd("s/"), prevKv: true));
        await fast.WatchAsync(WatchSession.Create("s/", WatchSession.PrefixEnd("s/"), prevKv: true));

        // ~24 MB of events: far beyond the HTTP/2 windows of the unread stream.
        const int writes = 6000;
        var value = B(new string('v', 4000));
        await Parallel.ForAsync(0, writes, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, ct) =>
            await kvj.Kv.PutAsync(new PutRequest { Key = B($"s/{i % 300}"), Value = value }, cancellationToken: ct));

        // Writes were all acknowledged while the slow stream was unread; the fast one has everything.
        var (fastBefore, _) = await fast.ReadUntilProgressAsync();
        Assert.Equal(writes, fastBefore.SelectMany(r => r.Events).Count());

        // Catch-up responses stay within gRPC's common 4 MiB default receive limit.
        slow.StartReading();
        var (slowBefore, _) = await slow.ReadUntilProgressAsync(retry: TimeSpan.FromMilliseconds(500), wait: TimeSpan.FromSeconds(60));
        var revisions = slowBefore.Where(r => !r.Created).SelectMany(r => r.Events).Select(e => e.Kv.ModRevision).ToList();
        Assert.Equal(Enumerable.Range(2, writes).Select(i => (long)i), revisions);
    }

    [Fact]
    public async Task StreamWithRequireLeaderMetadataIsServed()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        await using var s = new WatchSession(kvj.Channel, requireLeader: true);
        await s.WatchAsync(WatchSession.Create("x"));
        await kvj.Kv.PutAsync(new PutRequest { Key = B("x"), Value = B("1") });
        var r = await s.NextAsync();
        Assert.Equal("x", Assert.Single(r.Events).Kv.Key.ToStringUtf8());
    }

    /// <summary>
    /// A member that restarts from a state snapshot covering its last write replays a watch from
    /// a past revision at once (it used to take the revision for a future one until the next write).
    /// </summary>
    [Fact]
    public async Task AfterARestartFromASnapshotAWatchFromAPastRevisionReplaysHistory()
    {
        string dir = Paths.NewTempDir("kvj-watch-restart");
        try
        {
            await using (var kvj = await KvJournalProcess.StartAsync(dir, "--snapshot-count", "100"))
            {
                for (int i = 0; i < 120; i++) await kvj.Kv.PutAsync(new PutRequest { Key = B($"r/{i}"), Value = B("v") });
                string snapshots = Path.Combine(dir, "journal", "snapshots");
                var deadline = DateTime.UtcNow.AddSeconds(30);
                while (!Directory.Exists(snapshots) || Directory.GetFiles(snapshots, "*.snap").Length == 0) await Task.Delay(20).WaitAsync(deadline - DateTime.UtcNow);
                await kvj.KillAsync();
            }
            await using (var kvj = await KvJournalProcess.StartAsync(dir))
            {
                await using var watch = new WatchSession(kvj.Channel);
                await watch.WatchAsync(WatchSession.Create("r/", "r0", startRevision: 2));
                var first = await watch.NextAsync(TimeSpan.FromSeconds(10));
                Assert.Equal("r/0", first.Events[0].Kv.Key.ToStringUtf8());
                Assert.Equal(2, first.Events[0].Kv.ModRevision);
            }
        }
        finally
        {
            Paths.DeleteDir(dir);
        }
    }
}
