using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// One process serving three keyspaces (default, events, leases), each with its own client URL,
/// journal, revisions, leases, quota and alarms: filling the events shard never blocks the others.
/// </summary>
public sealed class ShardTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    [Fact]
    public async Task AFullEventsShardBlocksNeitherLeasesNorTheDefaultShard()
    {
        int eventsPort = Ports.Free(), leasesPort = Ports.Free();
        await using var kvj = await KvJournalProcess.StartAsync(null,
            "--shard", $"events=http://127.0.0.1:{eventsPort}", "--shard", $"leases=http://127.0.0.1:{leasesPort}",
            "--shard-quota-backend-bytes", "events=200000");
        using var eventsChannel = GrpcChannel.ForAddress($"http://127.0.0.1:{eventsPort}");
        using var leasesChannel = GrpcChannel.ForAddress($"http://127.0.0.1:{leasesPort}");
        var events = new KV.KVClient(eventsChannel);
        var leases = new KV.KVClient(leasesChannel);
        var main = kvj.Kv;

        // Each shard counts its own revisions.
        long mainRev = (await main.PutAsync(new PutRequest { Key = B("/registry/pods/a"), Value = B("1") })).Header.Revision;
        for (int i = 0; i < 3; i++) await leases.PutAsync(new PutRequest { Key = B($"/registry/leases/kube-node-lease/n{i}"), Value = B("r") });
        Assert.Equal(mainRev, (await main.RangeAsync(new RangeRequest { Key = B("/registry/pods/a") })).Header.Revision);
        Assert.Equal(4, (await leases.RangeAsync(new RangeRequest { Key = B("x") })).Header.Revision);
        Assert.Equal(1, (await events.RangeAsync(new RangeRequest { Key = B("x") })).Header.Revision);

        // Flood events past its quota: NOSPACE for events only.
        var value = B(new string('e', 4000));
        RpcException? refused = null;
        for (int i = 0; i < 1000 && refused is null; i++)
        {
            try { await events.PutAsync(new PutRequest { Key = B($"/registry/events/default/e{i:D4}"), Value = value }); }
            catch (RpcException ex) { refused = ex; }
        }
        Assert.NotNull(refused);
        Assert.Equal((StatusCode.ResourceExhausted, "etcdserver: mvcc: database space exceeded"), (refused!.StatusCode, refused.Status.Detail));
        var eventsGrant = await Assert.ThrowsAsync<RpcException>(() => new Lease.LeaseClient(eventsChannel).LeaseGrantAsync(new LeaseGrantRequest { TTL = 3660 }).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, eventsGrant.StatusCode);

        // Node lease renewals and lease grants on the leases shard, and the default shard, carry on.
        for (int i = 0; i < 20; i++) await leases.PutAsync(new PutRequest { Key = B($"/registry/leases/kube-node-lease/n{i % 3}"), Value = B("renewed") });
        Assert.True((await new Lease.LeaseClient(leasesChannel).LeaseGrantAsync(new LeaseGrantRequest { TTL = 60 })).ID != 0);
        await main.PutAsync(new PutRequest { Key = B("/registry/pods/b"), Value = B("2") });

        // etcdctl sees the alarm on the events shard only, and disarms it there after compaction.
        Assert.Contains("alarm:NOSPACE", (await Etcdctl.RunAsync($"127.0.0.1:{eventsPort}", null, "alarm", "list")).Stdout, StringComparison.Ordinal);
        Assert.Equal("", (await Etcdctl.RunAsync($"127.0.0.1:{leasesPort}", null, "alarm", "list")).Stdout.Trim());
        Assert.Equal("", (await Etcdctl.RunAsync(kvj.Endpoint, null, "alarm", "list")).Stdout.Trim());
        var deleted = await events.DeleteRangeAsync(new DeleteRangeRequest { Key = B("/registry/events/"), RangeEnd = B("/registry/events0") });
        await events.CompactAsync(new CompactionRequest { Revision = deleted.Header.Revision });
        var disarm = await Etcdctl.RunAsync($"127.0.0.1:{eventsPort}", null, "alarm", "disarm");
        Assert.Contains("alarm:NOSPACE", disarm.Stdout, StringComparison.Ordinal);
        await events.PutAsync(new PutRequest { Key = B("/registry/events/default/after"), Value = B("ok") });
        Assert.Equal("", (await Etcdctl.RunAsync($"127.0.0.1:{eventsPort}", null, "alarm", "list")).Stdout.Trim());
    }

    [Fact]
    public async Task ShardsKeepTheirDataAcrossRestart()
    {
        string dir = Paths.NewTempDir("shards");
        try
        {
            int port = Ports.Free();
            string[] args = ["--shard", $"events=http://127.0.0.1:{port}"];
            await using (var first = await KvJournalProcess.StartAsync(dir, args))
            {
                using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
                await new KV.KVClient(channel).PutAsync(new PutRequest { Key = B("e"), Value = B("kept") });
                await first.Kv.PutAsync(new PutRequest { Key = B("m"), Value = B("main") });
                await first.KillAsync();
            }
            await using var second = await KvJournalProcess.StartAsync(dir, args);
            using var again = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
            Assert.Equal("kept", (await new KV.KVClient(again).RangeAsync(new RangeRequest { Key = B("e") })).Kvs.Single().Value.ToStringUtf8());
            Assert.Empty((await new KV.KVClient(again).RangeAsync(new RangeRequest { Key = B("m") })).Kvs);
            Assert.Equal("main", (await second.Kv.RangeAsync(new RangeRequest { Key = B("m") })).Kvs.Single().Value.ToStringUtf8());
        }
        finally
        {
            Paths.DeleteDir(dir);
        }
    }

    [Fact]
    public async Task AWriteRateOnTheEventsShardRefusesItsFloodWithTooManyRequestsAndLeavesLeasesAlone()
    {
        int eventsPort = Ports.Free(), leasesPort = Ports.Free();
        await using var kvj = await KvJournalProcess.StartAsync(null,
            "--shard", $"events=http://127.0.0.1:{eventsPort}", "--shard", $"leases=http://127.0.0.1:{leasesPort}",
            "--shard-write-rate", "events=50", "--shard-max-inflight-writes", "events=8");
        using var eventsChannel = GrpcChannel.ForAddress($"http://127.0.0.1:{eventsPort}");
        using var leasesChannel = GrpcChannel.ForAddress($"http://127.0.0.1:{leasesPort}");
        var events = new KV.KVClient(eventsChannel);
        var leases = new KV.KVClient(leasesChannel);

        int admitted = 0, refused = 0;
        var flood = Parallel.ForAsync(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, ct) =>
        {
            try
            {
                await events.PutAsync(new PutRequest { Key = B($"/registry/events/e{i}"), Value = B("event") }, cancellationToken: ct);
                Interlocked.Increment(ref admitted);
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.ResourceExhausted && ex.Status.Detail == "etcdserver: too many requests")
            {
                Interlocked.Increment(ref refused);
            }
        });
        for (int i = 0; i < 50; i++) await leases.PutAsync(new PutRequest { Key = B($"/registry/leases/node-{i % 5}"), Value = B("renew") });
        await flood;

        Assert.True(refused > 0 && admitted > 0, $"admitted {admitted}, refused {refused}");
        // Nothing refused was written; everything admitted was.
        var written = await events.RangeAsync(new RangeRequest { Key = B("/registry/events/"), RangeEnd = B("/registry/events0"), CountOnly = true });
        Assert.Equal(admitted, written.Count);
        string metrics = await new HttpClient().GetStringAsync($"http://127.0.0.1:{eventsPort}/metrics");
        long counted = metrics.Split('\n').Where(l => l.StartsWith("kvjournal_throttled_writes_total{shard=\"events\"", StringComparison.Ordinal)).Sum(l => long.Parse(l.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(refused, counted);
        string leaseMetrics = await new HttpClient().GetStringAsync($"http://127.0.0.1:{leasesPort}/metrics");
        Assert.Contains("kvjournal_throttled_writes_total{shard=\"leases\",limit=\"rate\"} 0\n", leaseMetrics);
    }
}
