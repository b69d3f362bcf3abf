using System.Text.Json;
using Etcdserverpb;
using KvJournal.Member.Face;
using Xunit;
using Xunit.Abstractions;

namespace KvJournal.Unit.Tests;

/// <summary>
/// Bytes allocated per request on the hot paths (put, range, txn, keep-alive) through the shard's
/// face over a real embedded journal, against the budget checked in at bench/allocation-budget.json:
/// a change that allocates more per call fails here (as Garnet guards its own). All threads count
/// (GC.GetTotalAllocatedBytes), so the journal's commit and the applier are in the figure too.
/// Lower the budget when a change makes a path cheaper. It runs alone (the collection below), since
/// other tests' allocations would count too.
/// </summary>
[Collection(Alone.Name)]
public sealed class AllocationBudgetTests(ITestOutputHelper output)
{
    private static Dictionary<string, long> Budget()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "allocation-budget.json");
        return JsonSerializer.Deserialize(File.ReadAllText(path), BudgetJson.Default.DictionaryStringInt64)!;
    }

    private static async Task<long> BytesPerCallAsync(int calls, Func<int, Task> call)
    {
        for (int i = 0; i < Math.Min(500, calls); i++) await call(i); // warm: JIT, pools, dictionaries
        long before = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < calls; i++) await call(i);
        return (GC.GetTotalAllocatedBytes(precise: true) - before) / calls;
    }

    [Fact]
    public async Task HotPathsStayWithinTheirAllocationBudget()
    {
        await using var host = await FaceHost.StartAsync();
        var face = host.Face;
        var who = CallerIdentity.None;
        var value = FaceHost.B(new string('v', 256));
        var keys = Enumerable.Range(0, 1000).Select(i => FaceHost.B($"/registry/pods/default/pod-{i:D4}")).ToArray();
        var lease = await face.LeaseGrantAsync(new LeaseGrantRequest { TTL = 600 }, who, CancellationToken.None);

        var measured = new Dictionary<string, long>
        {
            ["put"] = await BytesPerCallAsync(2000, i => face.PutAsync(new PutRequest { Key = keys[i % keys.Length], Value = value }, who, CancellationToken.None)),
            ["range"] = await BytesPerCallAsync(20000, i => face.RangeAsync(new RangeRequest { Key = keys[i % keys.Length] }, who, CancellationToken.None)),
            ["txn"] = await BytesPerCallAsync(2000, async i =>
            {
                var key = keys[i % keys.Length];
                var current = (await face.RangeAsync(new RangeRequest { Key = key, Serializable = true }, who, CancellationToken.None)).Kvs[0].ModRevision;
                await face.TxnAsync(new TxnRequest
                {
                    Compare = { new Compare { Key = key, Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = current } },
                    Success = { new RequestOp { RequestPut = new PutRequest { Key = key, Value = value } } },
                    Failure = { new RequestOp { RequestRange = new RangeRequest { Key = key } } },
                }, who, CancellationToken.None);
            }),
            ["keepalive"] = await BytesPerCallAsync(2000, _ => face.LeaseKeepAliveAsync(new LeaseKeepAliveRequest { ID = lease.ID }, who, CancellationToken.None)),
        };
        var budget = Budget();
        foreach (var (path, bytes) in measured) output.WriteLine($"{path}: {bytes} bytes per call (budget {budget.GetValueOrDefault(path)})");
        var over = measured.Where(m => !budget.TryGetValue(m.Key, out long b) || m.Value > b).Select(m => $"{m.Key} {m.Value} > {budget.GetValueOrDefault(m.Key)}").ToList();
        Assert.True(over.Count == 0, $"over the allocation budget (bench/allocation-budget.json): {string.Join(", ", over)}");
    }
}

/// <summary>Tests that must not share the process with others running: xunit runs them after the rest, one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class Alone
{
    public const string Name = "alone";
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, long>))]
internal sealed partial class BudgetJson : System.Text.Json.Serialization.JsonSerializerContext;
