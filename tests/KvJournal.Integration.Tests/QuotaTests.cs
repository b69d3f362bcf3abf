using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// --quota-backend-bytes with etcd's semantics, side by side with the reference etcd: past the
/// quota NOSPACE is raised and writes that add data fail, reads and deletes go on, and after
/// compaction (and etcd's defragment) `alarm disarm` lets writes in again.
/// </summary>
public sealed class QuotaTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private static async Task<string> OutcomeAsync(Func<Task> call)
    {
        try
        {
            await call();
            return "ok";
        }
        catch (RpcException ex)
        {
            return $"{ex.StatusCode}: {ex.Status.Detail}";
        }
    }

    private static async Task<(List<string> Log, int Written, long Deleted)> ScenarioAsync(ServerProcess server)
    {
        var log = new List<string>();
        var maintenance = new Maintenance.MaintenanceClient(server.Channel);
        ulong member = (await maintenance.StatusAsync(new StatusRequest())).Header.MemberId;
        var value = B(new string('q', 4096));
        int written = 0;
        string refused = "";
        for (; written < 2000; written++)
        {
            refused = await OutcomeAsync(() => server.Kv.PutAsync(new PutRequest { Key = B($"q/{written:D4}"), Value = value }).ResponseAsync);
            if (refused != "ok") break;
        }
        Assert.InRange(written, 10, 1999);
        log.Add($"first refusal: {refused}");
        var alarms = await maintenance.AlarmAsync(new AlarmRequest { Action = AlarmRequest.Types.AlarmAction.Get });
        log.Add($"alarms: {string.Join(",", alarms.Alarms.Select(a => $"{(a.MemberID == member ? "self" : "other")}:{a.Alarm}"))}");
        log.Add($"put: {await OutcomeAsync(() => server.Kv.PutAsync(new PutRequest { Key = B("small"), Value = B("x") }).ResponseAsync)}");
        log.Add($"lease grant: {await OutcomeAsync(() => new Lease.LeaseClient(server.Channel).LeaseGrantAsync(new LeaseGrantRequest { TTL = 60 }).ResponseAsync)}");
        var putTxn = new TxnRequest { Success = { new RequestOp { RequestPut = new PutRequest { Key = B("t"), Value = B("x") } } } };
        log.Add($"txn with a put: {await OutcomeAsync(() => server.Kv.TxnAsync(putTxn).ResponseAsync)}");
        log.Add($"range: {await OutcomeAsync(() => server.Kv.RangeAsync(new RangeRequest { Key = B("q/0000") }).ResponseAsync)}");
        var deleteTxn = new TxnRequest { Success = { new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = B("q/0000") } } } };
        log.Add($"txn with a delete: {await OutcomeAsync(() => server.Kv.TxnAsync(deleteTxn).ResponseAsync)}");
        // Compared on both servers: a delete under NOSPACE removes every key there is. (How many puts
        // etcd let in around the refusal varies with its backend's commit timing.)
        long present = (await server.Kv.RangeAsync(new RangeRequest { Key = B("q/"), RangeEnd = B("q0"), CountOnly = true })).Count;
        var deleted = await server.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B("q/"), RangeEnd = B("q0") });
        log.Add($"delete range: {deleted.Deleted == present && present > 0}");

        // Free the space, then lift the alarm: writes work again.
        await server.Kv.CompactAsync(new CompactionRequest { Revision = deleted.Header.Revision, Physical = true });
        await maintenance.DefragmentAsync(new DefragmentRequest());
        log.Add($"put before disarm: {await OutcomeAsync(() => server.Kv.PutAsync(new PutRequest { Key = B("small"), Value = B("x") }).ResponseAsync)}");
        await maintenance.AlarmAsync(new AlarmRequest { Action = AlarmRequest.Types.AlarmAction.Deactivate, MemberID = member, Alarm = AlarmType.Nospace });
        log.Add($"put after disarm: {await OutcomeAsync(() => server.Kv.PutAsync(new PutRequest { Key = B("small"), Value = B("x") }).ResponseAsync)}");
        return (log, written, deleted.Deleted);
    }

    [Fact]
    public async Task NoSpaceRefusesWritesUntilCompactedAndDisarmedAsEtcdDoes()
    {
        string[] quota = ["--quota-backend-bytes", "300000"];
        await using var kvj = await KvJournalProcess.StartAsync(null, quota);
        await using var etcd = await ReferenceEtcdProcess.StartAsync(quota);
        var (theirs, _, _) = await ScenarioAsync(etcd);
        var (ours, written, deleted) = await ScenarioAsync(kvj);
        for (int i = 0; i < theirs.Count; i++)
            Assert.True(theirs[i] == ours[i], $"step {i}\n etcd:      {theirs[i]}\n kvjournal: {ours[i]}");
        Assert.Equal("first refusal: ResourceExhausted: etcdserver: mvcc: database space exceeded", ours[0]);
        // KvJournal's accounting is exact: every acknowledged put but q/0000 (deleted by the txn) was
        // there to delete, and no refused put was written.
        Assert.Equal(written - 1, deleted);
    }
}
