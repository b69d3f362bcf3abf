using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Mvccpb;
using Xunit;
using Xunit.Abstractions;

namespace KvJournal.Integration.Tests;

/// <summary>
/// The calls kube-apiserver makes, in exactly its shapes (../shared/reference/kube-apiserver-etcd-usage.md),
/// with the answers it relies on. Each test runs against kvjournal and against the reference etcd,
/// so the suite itself is checked too.
/// </summary>
public sealed class KubeContractTests(ITestOutputHelper output)
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    // "kvjournal-moved": a member that mirrored an etcd with history and cut over from it, so the
    // contract holds after a move too (revisions start where etcd's ended).
    private static async Task<ServerProcess> StartAsync(string server) => server switch
    {
        "etcd" => await ReferenceEtcdProcess.StartAsync(),
        "kvjournal-moved" => await KvJournalProcess.StartCutOverFromEtcdAsync(),
        _ => await KvJournalProcess.StartAsync(),
    };

    /// <summary>store.go Create: put only if the key does not exist (mod_revision == 0).</summary>
    private static Task<TxnResponse> CreateAsync(KV.KVClient kv, string key, string value, long lease = 0) => kv.TxnAsync(new TxnRequest
    {
        Compare = { new Compare { Key = B(key), Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = 0 } },
        Success = { new RequestOp { RequestPut = new PutRequest { Key = B(key), Value = B(value), Lease = lease } } },
    }).ResponseAsync;

    /// <summary>store.go GuaranteedUpdate: put if unchanged since origRev, else read it back.</summary>
    private static Task<TxnResponse> UpdateAsync(KV.KVClient kv, string key, long origRev, string value) => kv.TxnAsync(new TxnRequest
    {
        Compare = { new Compare { Key = B(key), Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = origRev } },
        Success = { new RequestOp { RequestPut = new PutRequest { Key = B(key), Value = B(value) } } },
        Failure = { new RequestOp { RequestRange = new RangeRequest { Key = B(key) } } },
    }).ResponseAsync;

    /// <summary>store.go Delete: delete if unchanged since origRev, else read it back.</summary>
    private static Task<TxnResponse> DeleteAsync(KV.KVClient kv, string key, long origRev) => kv.TxnAsync(new TxnRequest
    {
        Compare = { new Compare { Key = B(key), Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = origRev } },
        Success = { new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = B(key) } } },
        Failure = { new RequestOp { RequestRange = new RangeRequest { Key = B(key) } } },
    }).ResponseAsync;

    /// <summary>store.go GetList: one page of a recursive list at a fixed revision (0 = now).</summary>
    private static Task<RangeResponse> ListPageAsync(KV.KVClient kv, string prefix, string from, long limit, long revision) => kv.RangeAsync(new RangeRequest
    {
        Key = B(from),
        RangeEnd = B(WatchSession.PrefixEnd(prefix)),
        Limit = limit,
        Revision = revision,
    }).ResponseAsync;

    /// <summary>Pages through a prefix as the apiserver does; checks count and more on each page.</summary>
    private static async Task<(List<KeyValue> Items, long Revision, int Pages)> ListAllAsync(KV.KVClient kv, string prefix, long limit, long revision = 0)
    {
        var items = new List<KeyValue>();
        var (rev, pages) = await ListAllAsync(kv, prefix, limit, revision, items.Add);
        return (items, rev, pages);
    }

    // Each item goes to onItem, so a test can page through a large list without holding it (the
    // apiserver lists in another process than the writers).
    private static async Task<(long Revision, int Pages)> ListAllAsync(KV.KVClient kv, string prefix, long limit, long revision, Action<KeyValue> onItem)
    {
        string from = prefix;
        int pages = 0;
        while (true)
        {
            var page = await ListPageAsync(kv, prefix, from, limit, revision);
            pages++;
            if (revision == 0) revision = page.Header.Revision; // later pages keep the first page's revision
            foreach (var item in page.Kvs) onItem(item);
            // hasMore is len(kvs) < count: count must be exact for the rest of the range.
            Assert.Equal(page.Kvs.Count < page.Count, page.More);
            if (!page.More) return (revision, pages);
            Assert.NotEmpty(page.Kvs);
            from = page.Kvs[^1].Key.ToStringUtf8() + "\0"; // the continue key
        }
    }

    [Theory]
    [InlineData("kvjournal")]
    [InlineData("kvjournal-moved")]
    [InlineData("etcd")]
    public async Task GetListCreateUpdateDeleteAsTheApiserverSendsThem(string serverName)
    {
        await using var server = await StartAsync(serverName);
        var kv = server.Kv;
        const string prefix = "/registry/pods/";
        for (int i = 0; i < 1200; i++)
            Assert.True((await CreateAsync(kv, $"{prefix}default/pod-{i:D4}", $"{{\"i\":{i}}}")).Succeeded);
        var again = await CreateAsync(kv, $"{prefix}default/pod-0001", "dup");
        Assert.False(again.Succeeded); // AlreadyExists

        // Get: limit 1 at revision 0 and at a past revision; a missing key is an empty list.
        var got = await kv.RangeAsync(new RangeRequest { Key = B($"{prefix}default/pod-0007"), Limit = 1 });
        Assert.Equal("{\"i\":7}", got.Kvs.Single().Value.ToStringUtf8());
        var missing = await kv.RangeAsync(new RangeRequest { Key = B($"{prefix}default/nope"), Limit = 1 });
        Assert.Empty(missing.Kvs);
        long listRv = got.Header.Revision;

        // GuaranteedUpdate: a stale compare fails with the current object in the failure Range; the retry wins.
        long modRev = got.Kvs[0].ModRevision;
        Assert.True((await UpdateAsync(kv, $"{prefix}default/pod-0007", modRev, "v2")).Succeeded);
        var stale = await UpdateAsync(kv, $"{prefix}default/pod-0007", modRev, "v3");
        Assert.False(stale.Succeeded);
        var current = stale.Responses[0].ResponseRange.Kvs.Single();
        Assert.Equal("v2", current.Value.ToStringUtf8());
        Assert.True((await UpdateAsync(kv, $"{prefix}default/pod-0007", current.ModRevision, "v3")).Succeeded);

        // List with paging at a fixed revision while writes continue: the pages show the list's revision.
        var writer = Task.Run(async () =>
        {
            for (int i = 0; i < 200; i++) await CreateAsync(kv, $"{prefix}late/pod-{i:D4}", "late");
        });
        var (items, revision, pages) = await ListAllAsync(kv, prefix, limit: 500, revision: listRv);
        await writer;
        Assert.Equal(listRv, revision);
        Assert.Equal(1200, items.Count);
        Assert.Equal(3, pages);
        Assert.Equal("{\"i\":7}", items.Single(kv => kv.Key.ToStringUtf8().EndsWith("pod-0007", StringComparison.Ordinal)).Value.ToStringUtf8());
        var (now, _, _) = await ListAllAsync(kv, prefix, limit: 10_000);
        Assert.Equal(1400, now.Count);

        // Count-only and keys-only over the whole resource prefix.
        var count = await kv.RangeAsync(new RangeRequest { Key = B(prefix), RangeEnd = B(WatchSession.PrefixEnd(prefix)), CountOnly = true });
        Assert.Equal((1400, 0), (count.Count, count.Kvs.Count));
        var keys = await kv.RangeAsync(new RangeRequest { Key = B(prefix), RangeEnd = B(WatchSession.PrefixEnd(prefix)), KeysOnly = true });
        Assert.Equal(1400, keys.Kvs.Count);
        Assert.All(keys.Kvs, k => Assert.True(k.Value.IsEmpty));

        // Delete: a stale compare reads back; the right one deletes.
        var staleDelete = await DeleteAsync(kv, $"{prefix}default/pod-0007", modRev);
        Assert.False(staleDelete.Succeeded);
        long latest = staleDelete.Responses[0].ResponseRange.Kvs.Single().ModRevision;
        var deleted = await DeleteAsync(kv, $"{prefix}default/pod-0007", latest);
        Assert.Equal(1, deleted.Responses[0].ResponseDeleteRange.Deleted);

        // A future revision and a compacted one, with etcd's codes and messages.
        var future = await Assert.ThrowsAsync<RpcException>(() => ListPageAsync(kv, prefix, prefix, 10, deleted.Header.Revision + 100));
        Assert.Equal((StatusCode.OutOfRange, "etcdserver: mvcc: required revision is a future revision"), (future.StatusCode, future.Status.Detail));
        await kv.CompactAsync(new CompactionRequest { Revision = listRv });
        var compacted = await Assert.ThrowsAsync<RpcException>(() => ListPageAsync(kv, prefix, prefix, 10, listRv - 1));
        Assert.Equal((StatusCode.OutOfRange, "etcdserver: mvcc: required revision has been compacted"), (compacted.StatusCode, compacted.Status.Detail));

        // The health probe: a Range of /registry/health that finds nothing and succeeds.
        Assert.Empty((await kv.RangeAsync(new RangeRequest { Key = B("/registry/health") })).Kvs);
    }

    /// <summary>compact.go: one round of the compact_rev_key protocol for one apiserver.</summary>
    private sealed class Compactor(KV.KVClient kv)
    {
        public long LocalVersion;
        public long PrevRev;
        public int Compactions;

        public async Task RoundAsync()
        {
            var txn = await kv.TxnAsync(new TxnRequest
            {
                Compare = { new Compare { Key = B("compact_rev_key"), Target = Compare.Types.CompareTarget.Version, Result = Compare.Types.CompareResult.Equal, Version = LocalVersion } },
                Success = { new RequestOp { RequestPut = new PutRequest { Key = B("compact_rev_key"), Value = B(PrevRev.ToString(System.Globalization.CultureInfo.InvariantCulture)) } } },
                Failure = { new RequestOp { RequestRange = new RangeRequest { Key = B("compact_rev_key") } } },
            });
            long compactTo = PrevRev;
            // Either way the header revision is what the next round compacts to.
            PrevRev = txn.Header.Revision;
            if (!txn.Succeeded)
            {
                // Lost the race: adopt the winner's logical clock.
                LocalVersion = txn.Responses[0].ResponseRange.Kvs.Single().Version;
                return;
            }
            LocalVersion++;
            if (compactTo != 0)
            {
                await kv.CompactAsync(new CompactionRequest { Revision = compactTo, Physical = false });
                Compactions++;
            }
        }
    }

    [Theory]
    [InlineData("kvjournal")]
    [InlineData("kvjournal-moved")]
    [InlineData("etcd")]
    public async Task TwoApiserversShareCompactionThroughCompactRevKey(string serverName)
    {
        await using var server = await StartAsync(serverName);
        await using var watch = new WatchSession(server.Channel, requireLeader: true);
        var first = await server.Kv.RangeAsync(new RangeRequest { Key = B("compact_rev_key") });
        await watch.WatchAsync(WatchSession.Create("compact_rev_key", startRevision: first.Header.Revision + 1));

        var a = new Compactor(server.Kv);
        var b = new Compactor(new KV.KVClient(server.Channel));
        for (int round = 0; round < 4; round++)
        {
            for (int i = 0; i < 20; i++) await server.Kv.PutAsync(new PutRequest { Key = B($"/registry/configmaps/x/{i}"), Value = B($"{round}") });
            // Both try in the same round; the key's version lets exactly one of them win.
            await Task.WhenAll(a.RoundAsync(), b.RoundAsync());
            Assert.Equal(a.LocalVersion, b.LocalVersion);
        }
        Assert.Equal(4, a.LocalVersion);
        Assert.Equal(3, a.Compactions + b.Compactions);

        // The 1.34 watch loop learns every compacted revision from the key's values.
        var seen = new List<string>();
        while (seen.Count < 4)
        {
            foreach (var e in (await watch.NextAsync()).Events) seen.Add(e.Kv.Value.ToStringUtf8());
        }
        Assert.Equal("0", seen[0]);
        var compactedAt = long.Parse(seen[^1], System.Globalization.CultureInfo.InvariantCulture);
        var old = await Assert.ThrowsAsync<RpcException>(() => server.Kv.RangeAsync(new RangeRequest { Key = B("/registry/configmaps/x/0"), Revision = compactedAt - 1 }).ResponseAsync);
        Assert.Equal(StatusCode.OutOfRange, old.StatusCode);
    }

    [Theory]
    [InlineData("kvjournal")]
    [InlineData("kvjournal-moved")]
    [InlineData("etcd")]
    public async Task EventsOnOneReusedLeaseVanishWhenTheServerExpiresIt(string serverName)
    {
        await using var server = await StartAsync(serverName);
        var lease = new Lease.LeaseClient(server.Channel);
        // lease_manager.go grants ttl + reuse (3600 + 60) and attaches up to 1,000 objects to it.
        var hour = await lease.LeaseGrantAsync(new LeaseGrantRequest { TTL = 3660 });
        Assert.Equal(3660, hour.TTL);
        for (int i = 0; i < 1000; i++) Assert.True((await CreateAsync(server.Kv, $"/registry/events/default/e-{i:D4}", "event", hour.ID)).Succeeded);
        var ttl = await lease.LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = hour.ID, Keys = true });
        Assert.Equal(1000, ttl.Keys.Count);

        // The same shape with a TTL short enough to watch it expire; the apiserver never revokes.
        var shortLease = await lease.LeaseGrantAsync(new LeaseGrantRequest { TTL = 2 });
        for (int i = 0; i < 300; i++) await CreateAsync(server.Kv, $"/registry/events/kube-system/s-{i:D4}", $"short-{i}", shortLease.ID);
        await using var watch = new WatchSession(server.Channel, requireLeader: true);
        var from = await server.Kv.RangeAsync(new RangeRequest { Key = B("/registry/events/kube-system/"), RangeEnd = B(WatchSession.PrefixEnd("/registry/events/kube-system/")), Limit = 1 });
        await watch.WatchAsync(WatchSession.Create("/registry/events/kube-system/", WatchSession.PrefixEnd("/registry/events/kube-system/"), startRevision: from.Header.Revision + 1, prevKv: true, progressNotify: true));
        var deletes = new List<Event>();
        while (deletes.Count < 300)
        {
            foreach (var e in (await watch.NextAsync()).Events)
            {
                Assert.Equal(Event.Types.EventType.Delete, e.Type);
                Assert.NotNull(e.PrevKv); // "etcd event received with PrevKv=nil" is an error for the apiserver
                deletes.Add(e);
            }
        }
        Assert.All(deletes, e => Assert.StartsWith("short-", e.PrevKv.Value.ToStringUtf8(), StringComparison.Ordinal));
        Assert.Equal(1000, (await server.Kv.RangeAsync(new RangeRequest { Key = B("/registry/events/"), RangeEnd = B(WatchSession.PrefixEnd("/registry/events/")), CountOnly = true })).Count);
    }

    [Theory]
    [InlineData("kvjournal")]
    [InlineData("kvjournal-moved")]
    [InlineData("etcd")]
    public async Task ResourceWatchesOnOneConnectionWithProgressRequestsEvery100Ms(string serverName)
    {
        await using var server = await StartAsync(serverName);
        string[] resources = ["pods", "services", "configmaps", "secrets", "nodes", "deployments"];
        foreach (var r in resources)
            for (int i = 0; i < 50; i++) await CreateAsync(server.Kv, $"/registry/{r}/ns/{i}", "v1");
        long rv = (await server.Kv.RangeAsync(new RangeRequest { Key = B("/registry/pods/"), RangeEnd = B(WatchSession.PrefixEnd("/registry/pods/")), Limit = 1 })).Header.Revision;

        // One stream per resource (the cacher's reflector), all on one connection, from RV+1.
        var streams = new List<WatchSession>();
        try
        {
            foreach (var r in resources)
            {
                var s = new WatchSession(server.Channel, requireLeader: true);
                streams.Add(s);
                await s.WatchAsync(WatchSession.Create($"/registry/{r}/", WatchSession.PrefixEnd($"/registry/{r}/"), startRevision: rv + 1, prevKv: true, progressNotify: true));
            }
            foreach (var r in resources)
                for (int i = 0; i < 20; i++) await UpdateAsync(server.Kv, $"/registry/{r}/ns/{i}", 0, "ignored"); // stale: no change
            long last = 0;
            foreach (var r in resources)
                for (int i = 0; i < 10; i++) last = (await server.Kv.PutAsync(new PutRequest { Key = B($"/registry/{r}/ns/{i}"), Value = B("v2"), PrevKv = true })).Header.Revision;

            // A consistent read from cache: request progress every 100 ms until the watch has reached the read's revision.
            for (int k = 0; k < resources.Length; k++)
            {
                var events = new List<Event>();
                long progress = 0;
                var clock = Stopwatch.StartNew();
                while (progress < last)
                {
                    var (before, revision) = await streams[k].ReadUntilProgressAsync(retry: TimeSpan.FromMilliseconds(100));
                    events.AddRange(before.SelectMany(r => r.Events));
                    progress = revision;
                    Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30));
                }
                Assert.Equal(10, events.Count);
                Assert.All(events, e => Assert.Equal("v1", e.PrevKv.Value.ToStringUtf8()));
                Assert.All(events, e => Assert.StartsWith($"/registry/{resources[k]}/", e.Kv.Key.ToStringUtf8(), StringComparison.Ordinal));
            }

            // A watch from a compacted RV is canceled with the compact revision (410 Gone for the client).
            await server.Kv.CompactAsync(new CompactionRequest { Revision = last });
            await using var old = new WatchSession(server.Channel, requireLeader: true);
            await old.WatchAsync(WatchSession.Create("/registry/pods/", WatchSession.PrefixEnd("/registry/pods/"), startRevision: rv + 1, prevKv: true));
            var canceled = await old.NextAsync();
            Assert.Equal((true, last), (canceled.Canceled, canceled.CompactRevision));
        }
        finally
        {
            foreach (var s in streams) await s.DisposeAsync();
        }
    }

    [Theory]
    [InlineData("kvjournal")]
    [InlineData("kvjournal-moved")]
    [InlineData("etcd")]
    public async Task StatusVersionEnablesWatchProgressAndRangeStreamFallsBack(string serverName)
    {
        await using var server = await StartAsync(serverName);
        var status = await new Maintenance.MaintenanceClient(server.Channel).StatusAsync(new StatusRequest());
        // feature_support_checker.go: RequestWatchProgress iff ≥ 3.4.31 and not in [3.5.0, 3.5.13).
        var v = Version.Parse(status.Version);
        Assert.True(v >= new Version(3, 4, 31) && !(v >= new Version(3, 5, 0) && v < new Version(3, 5, 13)), $"version {status.Version}");
        Assert.True(status.DbSize > 0);
        var members = await new Cluster.ClusterClient(server.Channel).MemberListAsync(new MemberListRequest());
        Assert.Contains(members.Members, m => m.ID == status.Leader);

        // Kubernetes 1.37's KV.RangeStream: Unimplemented makes the apiserver fall back to Range.
        var rangeStream = new Method<RangeRequest, RangeResponse>(MethodType.ServerStreaming, "etcdserverpb.KV", "RangeStream",
            Marshallers.Create(r => r.ToByteArray(), RangeRequest.Parser.ParseFrom), Marshallers.Create(r => r.ToByteArray(), RangeResponse.Parser.ParseFrom));
        using var call = server.Channel.CreateCallInvoker().AsyncServerStreamingCall(rangeStream, null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(10)), new RangeRequest { Key = B("/registry/") });
        var ex = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.Unimplemented, ex.StatusCode);
    }

    [Theory]
    [InlineData("kvjournal")]
    [InlineData("kvjournal-moved")]
    [InlineData("etcd")]
    public async Task PagedListOfManyLargeObjectsWhileWritesContinue(string serverName)
    {
        const int objects = 100_000;
        await using var server = await StartAsync(serverName);
        var value = B(new string('o', 2048));
        await Parallel.ForAsync(0, objects / 50, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (t, ct) =>
        {
            var txn = new TxnRequest();
            for (int i = t * 50; i < (t + 1) * 50; i++) txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = B($"/registry/configmaps/big/{i:D6}"), Value = value } });
            await server.Kv.TxnAsync(txn, cancellationToken: ct);
        });
        long rssBefore = server.ResidentBytes().Current;

        using var stop = new CancellationTokenSource();
        var latencies = new List<double>();
        var writer = Task.Run(async () =>
        {
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                var t = Stopwatch.StartNew();
                await server.Kv.PutAsync(new PutRequest { Key = B($"/registry/leases/kube-node-lease/node-{i % 50}"), Value = B("renew") });
                latencies.Add(t.Elapsed.TotalMilliseconds);
            }
        });
        var clock = Stopwatch.StartNew();
        int listed = 0;
        string? lastKey = null;
        var (_, pages) = await ListAllAsync(server.Kv, "/registry/configmaps/", limit: 10_000, revision: 0, item =>
        {
            string key = item.Key.ToStringUtf8();
            Assert.True(lastKey is null || string.CompareOrdinal(lastKey, key) < 0, $"{key} listed after {lastKey}");
            Assert.Equal(2048, item.Value.Length);
            lastKey = key;
            listed++;
        });
        double listSeconds = clock.Elapsed.TotalSeconds;
        await stop.CancelAsync();
        await writer;
        long rssAfter = server.ResidentBytes().Peak;

        Assert.Equal(objects, listed);
        Assert.Equal(10, pages);
        // Not stalled: writes kept completing while the pages were built (latency figures, with the
        // writer in its own process, are bench/'s "list" run).
        Assert.True(latencies.Count >= pages, $"only {latencies.Count} writes completed during a list of {pages} pages");
        // Bounded memory: pages are built one at a time, never a copy of the whole 200 MB result
        // set (etcd itself grows by more than that; the bound is KvJournal's).
        if (serverName == "kvjournal")
            Assert.True(rssAfter - rssBefore < objects * 2048L / 2, $"RSS grew by {(rssAfter - rssBefore) / 1048576} MiB during the list");
        latencies.Sort();
        output.WriteLine($"{serverName}: listed {objects} objects of 2 KiB in {pages} pages in {listSeconds:F1} s; " +
            $"{latencies.Count} writes meanwhile, p50 {latencies[latencies.Count / 2]:F1} ms, p99 {latencies[latencies.Count * 99 / 100]:F1} ms, max {latencies[^1]:F1} ms; " +
            $"RSS {rssBefore / 1048576} MiB before, peak {rssAfter / 1048576} MiB");
    }
}
