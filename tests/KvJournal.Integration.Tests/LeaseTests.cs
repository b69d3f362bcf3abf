using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Testing;
using Mvccpb;
using Xunit;
using Xunit.Abstractions;

namespace KvJournal.Integration.Tests;

/// <summary>Lease expiry over the real wire: deletes, watch events, keep-alive, restart, mass expiry.</summary>
public sealed class LeaseTests(ITestOutputHelper output)
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    /// <summary>Reads responses until <paramref name="count"/> DELETE events arrived; returns them.</summary>
    private static async Task<List<(long Revision, Event Event)>> DeletesAsync(WatchSession s, int count, TimeSpan wait)
    {
        var deletes = new List<(long, Event)>();
        var deadline = DateTime.UtcNow + wait;
        while (deletes.Count < count)
        {
            var r = await s.NextAsync(deadline - DateTime.UtcNow);
            foreach (var e in r.Events)
                if (e.Type == Event.Types.EventType.Delete) deletes.Add((e.Kv.ModRevision, e));
        }
        return deletes;
    }

    [Fact]
    public async Task ExpiryDeletesAttachedKeysInOneRevisionWithDeleteEvents()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        var lease = new Lease.LeaseClient(kvj.Channel);
        var granted = await lease.LeaseGrantAsync(new LeaseGrantRequest { TTL = 2 });
        Assert.Equal(2, granted.TTL);
        foreach (var k in new[] { "e/1", "e/2", "e/3" })
            await kvj.Kv.PutAsync(new PutRequest { Key = B(k), Value = B("v-" + k), Lease = granted.ID });
        await kvj.Kv.PutAsync(new PutRequest { Key = B("e/other"), Value = B("stays") });

        await using var watch = new WatchSession(kvj.Channel);
        await watch.WatchAsync(WatchSession.Create("e/", WatchSession.PrefixEnd("e/"), prevKv: true));
        var clock = Stopwatch.StartNew();
        var deletes = await DeletesAsync(watch, 3, TimeSpan.FromSeconds(15));
        output.WriteLine($"revoked {clock.Elapsed.TotalSeconds:F2} s after the watch started (TTL 2 s)");

        Assert.Single(deletes.Select(d => d.Revision).Distinct()); // one revision for all three
        Assert.Equal(["e/1", "e/2", "e/3"], deletes.Select(d => d.Event.Kv.Key.ToStringUtf8()));
        Assert.All(deletes, d => Assert.Equal("v-" + d.Event.Kv.Key.ToStringUtf8(), d.Event.PrevKv.Value.ToStringUtf8()));
        var left = await kvj.Kv.RangeAsync(new RangeRequest { Key = B("e/"), RangeEnd = B(WatchSession.PrefixEnd("e/")) });
        Assert.Equal(["e/other"], left.Kvs.Select(kv => kv.Key.ToStringUtf8()));
        var ttl = await lease.LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = granted.ID });
        Assert.Equal(-1, ttl.TTL);
        Assert.Empty((await lease.LeaseLeasesAsync(new LeaseLeasesRequest())).Leases);
    }

    [Fact]
    public async Task KeepAliveStreamKeepsALeaseAliveAcrossManyTtls()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        var lease = new Lease.LeaseClient(kvj.Channel);
        var granted = await lease.LeaseGrantAsync(new LeaseGrantRequest { TTL = 2 });
        await kvj.Kv.PutAsync(new PutRequest { Key = B("alive"), Value = B("1"), Lease = granted.ID });

        // A client's cadence: a keep-alive every 0.5 s for 8 s, four TTLs.
        using (var call = lease.LeaseKeepAlive())
        {
            using var cadence = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
            for (int i = 0; i < 16; i++)
            {
                await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = granted.ID });
                Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
                Assert.Equal((granted.ID, 2L), (call.ResponseStream.Current.ID, call.ResponseStream.Current.TTL));
                await cadence.WaitForNextTickAsync();
            }
            await call.RequestStream.CompleteAsync();
        }
        var still = await kvj.Kv.RangeAsync(new RangeRequest { Key = B("alive") });
        Assert.Single(still.Kvs);

        // Without keep-alives it then expires.
        await using var watch = new WatchSession(kvj.Channel);
        await watch.WatchAsync(WatchSession.Create("alive", startRevision: still.Header.Revision + 1));
        await DeletesAsync(watch, 1, TimeSpan.FromSeconds(15));

        // A keep-alive for a lease that is gone is answered with TTL 0.
        using var late = lease.LeaseKeepAlive();
        await late.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = granted.ID });
        Assert.True(await late.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(0, late.ResponseStream.Current.TTL);
    }

    /// <summary>
    /// etcd clientv3's KeepAlive shape: one stream carrying the renewals of many leases, sent
    /// without waiting for answers. Both servers answer each one, in the order sent, with its TTL
    /// (and TTL 0 for a lease that does not exist).
    /// </summary>
    [Theory]
    [InlineData("kvjournal")]
    [InlineData("etcd")]
    public async Task ManyLeasesRenewedOnOneStreamAreAnsweredInOrder(string serverName)
    {
        await using ServerProcess server = serverName == "etcd" ? await ReferenceEtcdProcess.StartAsync() : await KvJournalProcess.StartAsync();
        var leases = new Lease.LeaseClient(server.Channel);
        var ids = new List<long>();
        for (int i = 0; i < 200; i++) ids.Add((await leases.LeaseGrantAsync(new LeaseGrantRequest { TTL = 60 + i % 3 })).ID);
        ids.Insert(100, 424242); // not a lease
        using var call = leases.LeaseKeepAlive();
        var sending = Task.Run(async () =>
        {
            foreach (long id in ids) await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = id });
        });
        var answers = new List<(long, long)>();
        while (answers.Count < ids.Count && await call.ResponseStream.MoveNext(CancellationToken.None))
            answers.Add((call.ResponseStream.Current.ID, call.ResponseStream.Current.TTL));
        await sending;
        await call.RequestStream.CompleteAsync();
        Assert.Equal(ids, answers.Select(a => a.Item1));
        Assert.Equal(0, answers[100].Item2);
        Assert.All(answers.Where(a => a.Item1 != 424242), a => Assert.InRange(a.Item2, 60, 62));
    }

    [Fact]
    public async Task ExpiryAfterKillAndRestartHonoursTheOriginalDeadline()
    {
        string dir = Paths.NewTempDir("lease-restart");
        try
        {
            const int ttl = 10;
            long id;
            var clock = Stopwatch.StartNew();
            await using (var first = await KvJournalProcess.StartAsync(dir))
            {
                var granted = await new Lease.LeaseClient(first.Channel).LeaseGrantAsync(new LeaseGrantRequest { TTL = ttl });
                clock.Restart();
                id = granted.ID;
                await first.Kv.PutAsync(new PutRequest { Key = B("r/key"), Value = B("v"), Lease = id });
                // Part of the TTL passes before the crash: that time must count.
                await Task.Delay(TimeSpan.FromSeconds(4));
                await first.KillAsync();
            }
            await using var second = await KvJournalProcess.StartAsync(dir);
            double restartedAt = clock.Elapsed.TotalSeconds;
            var remaining = await new Lease.LeaseClient(second.Channel).LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = id });
            Assert.InRange(remaining.TTL, 1, ttl - 4);

            await using var watch = new WatchSession(second.Channel);
            var created = await watch.WatchAsync(WatchSession.Create("r/key"));
            if ((await second.Kv.RangeAsync(new RangeRequest { Key = B("r/key") })).Kvs.Count > 0)
                await DeletesAsync(watch, 1, TimeSpan.FromSeconds(30));
            double goneAt = clock.Elapsed.TotalSeconds;
            output.WriteLine($"granted TTL {ttl} s; restarted at {restartedAt:F1} s; key gone at {goneAt:F1} s after the grant");
            // A deadline reset by the restart would put expiry at restart + TTL or later.
            Assert.InRange(goneAt, ttl - 0.5, Math.Min(ttl + 2.5, restartedAt + ttl - 0.5));
        }
        finally
        {
            Paths.DeleteDir(dir);
        }
    }

    [Fact]
    public async Task TenThousandLeasesExpireAndWritesKeepBeingAnswered()
    {
        const int leases = 10_000;
        await using var kvj = await KvJournalProcess.StartAsync();
        var client = new Lease.LeaseClient(kvj.Channel);
        var ids = new long[leases];
        var setup = Stopwatch.StartNew();
        await Parallel.ForAsync(0, leases, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (i, ct) =>
        {
            ids[i] = (await client.LeaseGrantAsync(new LeaseGrantRequest { TTL = 8 }, cancellationToken: ct)).ID;
            await kvj.Kv.PutAsync(new PutRequest { Key = B($"m/{i:D5}"), Value = B("x"), Lease = ids[i] }, cancellationToken: ct);
        });
        output.WriteLine($"granted {leases} leases with one key each in {setup.Elapsed.TotalSeconds:F1} s");

        await using var watch = new WatchSession(kvj.Channel);
        await watch.WatchAsync(WatchSession.Create("m/", WatchSession.PrefixEnd("m/")));
        var sweep = DeletesAsync(watch, leases, TimeSpan.FromSeconds(90));

        // Writes on other keys while the leases expire: each must be answered; latencies reported.
        var latencies = new List<double>();
        int n = 0;
        while (!sweep.IsCompleted)
        {
            var t = Stopwatch.StartNew();
            await kvj.Kv.PutAsync(new PutRequest { Key = B($"other/{n++ % 100}"), Value = B("y") }, deadline: DateTime.UtcNow.AddSeconds(10));
            latencies.Add(t.Elapsed.TotalMilliseconds);
        }
        var deletes = await sweep;
        double sweepSeconds = setup.Elapsed.TotalSeconds;

        Assert.Equal(leases, deletes.Select(d => d.Event.Kv.Key).Distinct().Count());
        Assert.Empty((await client.LeaseLeasesAsync(new LeaseLeasesRequest())).Leases);
        var left = await kvj.Kv.RangeAsync(new RangeRequest { Key = B("m/"), RangeEnd = B(WatchSession.PrefixEnd("m/")), CountOnly = true });
        Assert.Equal(0, left.Count);
        Assert.True(latencies.Count > 10, $"only {latencies.Count} writes during the sweep");
        latencies.Sort();
        output.WriteLine($"all revoked {sweepSeconds:F1} s after the first grant; {latencies.Count} puts during the sweep: " +
            $"p50 {latencies[latencies.Count / 2]:F1} ms, p99 {latencies[latencies.Count * 99 / 100]:F1} ms, max {latencies[^1]:F1} ms");
    }
}
