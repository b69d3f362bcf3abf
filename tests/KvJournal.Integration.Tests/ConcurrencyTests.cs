using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using V3electionpb;
using V3lockpb;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// Locks and elections: etcdctl lock / elect with processes contending, and the v3lock and
/// v3election gRPC services called directly, each scenario against kvjournal and the reference etcd.
/// </summary>
public sealed class ConcurrencyTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private static async Task<ServerProcess> StartAsync(string server) =>
        server == "etcd" ? await ReferenceEtcdProcess.StartAsync() : await KvJournalProcess.StartAsync();

    // Awaits a condition on the keyspace (a contender queued, a key gone), bounded in time.
    private static Task UntilAsync(Func<Task<bool>> condition, string what) => Poll.UntilAsync(condition, done => done, TimeSpan.FromSeconds(20), what);

    private static async Task<long> CountAsync(ServerProcess server, string prefix) =>
        (await server.Kv.RangeAsync(new RangeRequest { Key = B(prefix), RangeEnd = B(WatchSession.PrefixEnd(prefix)), CountOnly = true })).Count;

    [Theory]
    [InlineData("kvjournal")]
    [InlineData("etcd")]
    public async Task EtcdctlLockSerializesTwoProcesses(string serverName)
    {
        await using var server = await StartAsync(serverName);
        await using var first = new EtcdctlSession(server.Endpoint, "lock", "--ttl=2", "jobs");
        var acquired = await first.ReadUntilAsync(l => l.StartsWith("jobs/", StringComparison.Ordinal));
        Assert.Matches("^jobs/[0-9a-f]+$", acquired[^1]);

        // The second holder queues behind the first and does not run its command meanwhile.
        await using var second = new EtcdctlSession(server.Endpoint, "lock", "--ttl=2", "jobs", "echo", "second-holder");
        await UntilAsync(async () => await CountAsync(server, "jobs/") == 2, "the second etcdctl lock never queued");
        Assert.False(second.HasExited);

        // The first dies without unlocking: its lease runs out and the lock passes on.
        await first.KillAsync();
        var ran = await second.ReadUntilAsync(l => l == "second-holder");
        Assert.Equal("second-holder", ran[^1]);
        using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await second.WaitForExitAsync(exit.Token);
        await UntilAsync(async () => await CountAsync(server, "jobs/") == 0, "the second holder did not unlock");
    }

    [Theory]
    [InlineData("kvjournal")]
    [InlineData("etcd")]
    public async Task EtcdctlElectHandsLeadershipToTheNextCandidate(string serverName)
    {
        await using var server = await StartAsync(serverName);
        await using var observer = new EtcdctlSession(server.Endpoint, "elect", "--listen", "lead");
        await using var alpha = new EtcdctlSession(server.Endpoint, "elect", "lead", "alpha");
        var elected = await alpha.ReadUntilAsync(l => l == "alpha");
        Assert.Matches("^lead/[0-9a-f]+$", elected[^2]);
        await observer.ReadUntilAsync(l => l == "alpha");

        await using var beta = new EtcdctlSession(server.Endpoint, "elect", "lead", "beta");
        await UntilAsync(async () => await CountAsync(server, "lead/") == 2, "beta never campaigned");
        var leader = await new Election.ElectionClient(server.Channel).LeaderAsync(new LeaderRequest { Name = B("lead") });
        Assert.Equal("alpha", leader.Kv.Value.ToStringUtf8());

        // Ctrl-C makes alpha resign; beta is elected and the observer sees it.
        alpha.Interrupt();
        var next = await beta.ReadUntilAsync(l => l == "beta");
        Assert.Matches("^lead/[0-9a-f]+$", next[^2]);
        await observer.ReadUntilAsync(l => l == "beta");
    }

    [Theory]
    [InlineData("kvjournal")]
    [InlineData("etcd")]
    public async Task LockServiceQueuesHoldersByLease(string serverName)
    {
        await using var server = await StartAsync(serverName);
        var leases = new Etcdserverpb.Lease.LeaseClient(server.Channel);
        var locks = new V3lockpb.Lock.LockClient(server.Channel);
        long one = (await leases.LeaseGrantAsync(new LeaseGrantRequest { TTL = 30 })).ID;
        long two = (await leases.LeaseGrantAsync(new LeaseGrantRequest { TTL = 30 })).ID;

        var first = await locks.LockAsync(new LockRequest { Name = B("grpc-lock"), Lease = one });
        Assert.Equal($"grpc-lock/{one:x}", first.Key.ToStringUtf8());
        using var call = locks.LockAsync(new LockRequest { Name = B("grpc-lock"), Lease = two });
        await UntilAsync(async () => await CountAsync(server, "grpc-lock/") == 2, "the second Lock never queued");
        Assert.False(call.ResponseAsync.IsCompleted);

        var unlocked = await locks.UnlockAsync(new UnlockRequest { Key = first.Key });
        var second = await call.ResponseAsync;
        Assert.Equal($"grpc-lock/{two:x}", second.Key.ToStringUtf8());
        Assert.True(second.Header.Revision >= unlocked.Header.Revision);

        // Revoking the holder's lease releases the lock too.
        using var third = locks.LockAsync(new LockRequest { Name = B("grpc-lock"), Lease = one });
        await UntilAsync(async () => await CountAsync(server, "grpc-lock/") == 2, "the third Lock never queued");
        await leases.LeaseRevokeAsync(new LeaseRevokeRequest { ID = two });
        Assert.Equal($"grpc-lock/{one:x}", (await third.ResponseAsync).Key.ToStringUtf8());
    }

    [Theory]
    [InlineData("kvjournal")]
    [InlineData("etcd")]
    public async Task ElectionServiceCampaignsProclaimsObservesAndResigns(string serverName)
    {
        await using var server = await StartAsync(serverName);
        var leases = new Etcdserverpb.Lease.LeaseClient(server.Channel);
        var election = new Election.ElectionClient(server.Channel);
        long one = (await leases.LeaseGrantAsync(new LeaseGrantRequest { TTL = 30 })).ID;
        long two = (await leases.LeaseGrantAsync(new LeaseGrantRequest { TTL = 30 })).ID;

        var none = await Assert.ThrowsAsync<RpcException>(() => election.LeaderAsync(new LeaderRequest { Name = B("svc") }).ResponseAsync);
        Assert.Equal((StatusCode.Unknown, "election: no leader"), (none.StatusCode, none.Status.Detail));

        var won = await election.CampaignAsync(new CampaignRequest { Name = B("svc"), Lease = one, Value = B("v1") });
        Assert.Equal($"svc/{one:x}", won.Leader.Key.ToStringUtf8());
        Assert.Equal(won.Header.Revision, won.Leader.Rev);
        Assert.Equal("v1", (await election.LeaderAsync(new LeaderRequest { Name = B("svc") })).Kv.Value.ToStringUtf8());

        using var observe = election.Observe(new LeaderRequest { Name = B("svc") });
        Assert.True(await observe.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal("v1", observe.ResponseStream.Current.Kv.Value.ToStringUtf8());

        await election.ProclaimAsync(new ProclaimRequest { Leader = won.Leader, Value = B("v2") });
        Assert.True(await observe.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal("v2", observe.ResponseStream.Current.Kv.Value.ToStringUtf8());

        using var challenger = election.CampaignAsync(new CampaignRequest { Name = B("svc"), Lease = two, Value = B("w") });
        await UntilAsync(async () => await CountAsync(server, "svc/") == 2, "the challenger never campaigned");
        Assert.False(challenger.ResponseAsync.IsCompleted);

        await election.ResignAsync(new ResignRequest { Leader = won.Leader });
        var next = await challenger.ResponseAsync;
        Assert.Equal($"svc/{two:x}", next.Leader.Key.ToStringUtf8());
        Assert.True(await observe.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal("w", observe.ResponseStream.Current.Kv.Value.ToStringUtf8());

        // The resigned leader can no longer proclaim.
        var stale = await Assert.ThrowsAsync<RpcException>(() => election.ProclaimAsync(new ProclaimRequest { Leader = won.Leader, Value = B("late") }).ResponseAsync);
        Assert.Equal((StatusCode.Unknown, "election: not leader"), (stale.StatusCode, stale.Status.Detail));
    }
}
