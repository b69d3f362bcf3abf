using System.Text.Json;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>The Maintenance and Cluster calls etcdctl and kube-apiserver make, over the real wire.</summary>
public sealed class MaintenanceTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    [Fact]
    public async Task EtcdctlEndpointStatusMemberListAlarmDefragAndHealthWork()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        var before = await StatusAsync(kvj);
        await Etcdctl.RunAsync(kvj.Endpoint, null, "put", "a", "1");
        var after = await StatusAsync(kvj);

        Assert.Equal("3.6.0", after.GetProperty("version").GetString()); // kube-apiserver enables watch progress from 3.6
        Assert.True(after.GetProperty("dbSize").GetInt64() > 0);
        ulong member = after.GetProperty("header").GetProperty("member_id").GetUInt64();
        Assert.Equal(member, after.GetProperty("leader").GetUInt64());
        Assert.True(after.GetProperty("raftIndex").GetUInt64() > before.GetProperty("raftIndex").GetUInt64());
        Assert.True(after.GetProperty("dbSize").GetInt64() > before.GetProperty("dbSize").GetInt64());

        var members = await Etcdctl.RunAsync(kvj.Endpoint, null, "member", "list", "-w", "json");
        var listed = JsonDocument.Parse(members.Stdout).RootElement.GetProperty("members").EnumerateArray().Single();
        Assert.Equal(member, listed.GetProperty("ID").GetUInt64());
        Assert.Equal("kvj-test", listed.GetProperty("name").GetString());
        Assert.Equal($"http://{kvj.Endpoint}", listed.GetProperty("clientURLs").EnumerateArray().Single().GetString());

        var alarms = await Etcdctl.RunAsync(kvj.Endpoint, null, "alarm", "list");
        Assert.Equal((0, ""), (alarms.ExitCode, alarms.Stdout.Trim()));
        var defrag = await Etcdctl.RunAsync(kvj.Endpoint, null, "defrag");
        Assert.Equal($"Finished defragmenting etcd member[{kvj.Endpoint}]", defrag.Stdout.Trim());
        var health = await Etcdctl.RunAsync(kvj.Endpoint, null, "endpoint", "health");
        Assert.Equal(0, health.ExitCode);
        Assert.StartsWith($"{kvj.Endpoint} is healthy", health.Stdout + health.Stderr, StringComparison.Ordinal);
    }

    private static async Task<JsonElement> StatusAsync(ServerProcess server)
    {
        var r = await Etcdctl.RunAsync(server.Endpoint, null, "endpoint", "status", "-w", "json");
        Assert.Equal(0, r.ExitCode);
        return JsonDocument.Parse(r.Stdout).RootElement[0].GetProperty("Status");
    }

    [Fact]
    public async Task MemberListComesFromTheJournalAndSurvivesRestart()
    {
        string dir = Paths.NewTempDir("members");
        try
        {
            ulong id;
            await using (var first = await KvJournalProcess.StartAsync(dir))
            {
                var list = await new Cluster.ClusterClient(first.Channel).MemberListAsync(new MemberListRequest { Linearizable = true });
                id = Assert.Single(list.Members).ID;
                Assert.Equal(list.Header.MemberId, id);
                await first.KillAsync();
            }
            // Restarted on a new port: the member's announcement is updated, not duplicated.
            await using var second = await KvJournalProcess.StartAsync(dir);
            var again = await new Cluster.ClusterClient(second.Channel).MemberListAsync(new MemberListRequest());
            var member = Assert.Single(again.Members);
            Assert.Equal((id, $"http://{second.Endpoint}"), (member.ID, member.ClientURLs.Single()));
        }
        finally
        {
            Paths.DeleteDir(dir);
        }
    }

    [Fact]
    public async Task HashKvIsTheSameOnMembersThatAppliedTheSameWrites()
    {
        await using var one = await KvJournalProcess.StartAsync();
        await using var two = await KvJournalProcess.StartAsync();
        foreach (var server in new[] { one, two })
        {
            for (int i = 0; i < 50; i++) await server.Kv.PutAsync(new PutRequest { Key = B($"k{i % 7}"), Value = B($"v{i}") });
            await server.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B("k3") });
            await server.Kv.CompactAsync(new CompactionRequest { Revision = 20 });
        }
        var m1 = new Maintenance.MaintenanceClient(one.Channel);
        var m2 = new Maintenance.MaintenanceClient(two.Channel);
        foreach (long rev in new long[] { 0, 20, 35 })
        {
            var h1 = await m1.HashKVAsync(new HashKVRequest { Revision = rev });
            var h2 = await m2.HashKVAsync(new HashKVRequest { Revision = rev });
            Assert.Equal((h1.Hash, h1.CompactRevision, h1.HashRevision), (h2.Hash, h2.CompactRevision, h2.HashRevision));
            Assert.Equal(20, h1.CompactRevision);
        }
        var atHead = (await m1.HashKVAsync(new HashKVRequest())).Hash;
        Assert.NotEqual(atHead, (await m1.HashKVAsync(new HashKVRequest { Revision = 35 })).Hash);
        await one.Kv.PutAsync(new PutRequest { Key = B("k0"), Value = B("diverged") });
        Assert.NotEqual((await m1.HashKVAsync(new HashKVRequest())).Hash, (await m2.HashKVAsync(new HashKVRequest())).Hash);
        Assert.Equal((await m1.HashAsync(new HashRequest())).Hash, (await m1.HashKVAsync(new HashKVRequest())).Hash);

        var compacted = await Assert.ThrowsAsync<RpcException>(() => m1.HashKVAsync(new HashKVRequest { Revision = 10 }).ResponseAsync);
        Assert.Equal((StatusCode.OutOfRange, "etcdserver: mvcc: required revision has been compacted"), (compacted.StatusCode, compacted.Status.Detail));
        var future = await Assert.ThrowsAsync<RpcException>(() => m1.HashKVAsync(new HashKVRequest { Revision = 1000 }).ResponseAsync);
        Assert.Equal((StatusCode.OutOfRange, "etcdserver: mvcc: required revision is a future revision"), (future.StatusCode, future.Status.Detail));
    }

    [Fact]
    public async Task EtcdctlSnapshotSaveGetsAChecksummedPointInTimeSnapshot()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        await Parallel.ForAsync(0, 2500, new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, ct) =>
            await kvj.Kv.PutAsync(new PutRequest { Key = B($"s/{i:D4}"), Value = B(new string('v', 100)) }, cancellationToken: ct));
        await kvj.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B("s/0000") });
        string file = Path.Combine(kvj.DataDir, "..", $"snap-{Guid.NewGuid():N}.db");
        try
        {
            var saved = await Etcdctl.RunAsync(kvj.Endpoint, null, "snapshot", "save", file);
            Assert.Equal($"Snapshot saved at {file}", saved.Stdout.Trim());
            byte[] bytes = await File.ReadAllBytesAsync(file);
            Assert.Equal(32, bytes.Length % 512);
            Assert.Equal(System.Security.Cryptography.SHA256.HashData(bytes.AsSpan(0, bytes.Length - 32)), bytes[^32..]);

            // Its content is etcd's database: etcdutl reads the revision of the last write, and every
            // version (2,500 puts and a tombstone) plus etcd's own bookkeeping keys.
            var status = await Etcdutl.RunAsync("snapshot", "status", file, "-w", "json");
            Assert.True(status.ExitCode == 0, status.Stderr);
            Assert.Contains("\"revision\":2502,", status.Stdout);
            Assert.Contains("\"totalKey\":2506,", status.Stdout);
            Assert.Empty(Directory.GetFiles(kvj.DataDir, "snapshot-*")); // the member's temporary copy is gone
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task AlarmsListDisarmAndHealthMatchEtcd()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        async Task<List<string>> ScenarioAsync(ServerProcess server)
        {
            var maintenance = new Maintenance.MaintenanceClient(server.Channel);
            ulong member = (await maintenance.StatusAsync(new StatusRequest())).Header.MemberId;
            string Named(string text) => text.Replace(member.ToString(System.Globalization.CultureInfo.InvariantCulture), "<member>", StringComparison.Ordinal)
                .Replace(member.ToString("x", System.Globalization.CultureInfo.InvariantCulture), "<member>", StringComparison.Ordinal);
            var log = new List<string>();
            var raised = await maintenance.AlarmAsync(new AlarmRequest { Action = AlarmRequest.Types.AlarmAction.Activate, MemberID = member, Alarm = AlarmType.Nospace });
            log.Add(Named(raised.Alarms.ToString()));
            log.Add(Named((await Etcdctl.RunAsync(server.Endpoint, null, "alarm", "list")).Normalized()));
            var health = await Etcdctl.RunAsync(server.Endpoint, null, "endpoint", "health");
            log.Add($"health exit {health.ExitCode}");
            var status = await maintenance.StatusAsync(new StatusRequest());
            log.Add(Named(string.Join('|', status.Errors)));
            var http = await Curl.GetAsync($"http://{server.Endpoint}/health");
            log.Add($"{http.Status} {http.Body}");
            var excluded = await Curl.GetAsync($"http://{server.Endpoint}/health?exclude=NOSPACE");
            log.Add($"{excluded.Status} {excluded.Body}");
            log.Add(Named((await Etcdctl.RunAsync(server.Endpoint, null, "alarm", "disarm")).Normalized()));
            log.Add(Named((await Etcdctl.RunAsync(server.Endpoint, null, "alarm", "list")).Normalized()));
            var healed = await Curl.GetAsync($"http://{server.Endpoint}/health");
            log.Add($"{healed.Status} {healed.Body}");
            return log;
        }
        var theirs = await ScenarioAsync(etcd);
        var ours = await ScenarioAsync(kvj);
        for (int i = 0; i < theirs.Count; i++)
            Assert.True(theirs[i] == ours[i], $"step {i}\n etcd:      {theirs[i]}\n kvjournal: {ours[i]}");
        Assert.Contains("503 {\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n", ours);
    }

    [Fact]
    public async Task LeadershipMembershipAndDowngradeAnswerAtOnce()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        var maintenance = new Maintenance.MaintenanceClient(kvj.Channel);
        var status = await maintenance.StatusAsync(new StatusRequest());
        await maintenance.MoveLeaderAsync(new MoveLeaderRequest { TargetID = status.Leader }); // to itself: a no-op
        var elsewhere = await Assert.ThrowsAsync<RpcException>(() => maintenance.MoveLeaderAsync(new MoveLeaderRequest { TargetID = status.Leader + 1 }).ResponseAsync);
        Assert.Equal((StatusCode.FailedPrecondition, "etcdserver: bad leader transferee"), (elsewhere.StatusCode, elsewhere.Status.Detail));
        var cancel = await Assert.ThrowsAsync<RpcException>(() => maintenance.DowngradeAsync(new DowngradeRequest { Action = DowngradeRequest.Types.DowngradeAction.Cancel }).ResponseAsync);
        Assert.Equal((StatusCode.FailedPrecondition, "etcdserver: no inflight downgrade job"), (cancel.StatusCode, cancel.Status.Detail));
        var add = await Assert.ThrowsAsync<RpcException>(() => new Cluster.ClusterClient(kvj.Channel).MemberAddAsync(new MemberAddRequest { PeerURLs = { "http://127.0.0.1:1" } }).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, add.StatusCode);
    }
}
