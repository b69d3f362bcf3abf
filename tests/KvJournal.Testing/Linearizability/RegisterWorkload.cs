using System.Collections.Concurrent;
using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;

namespace KvJournal.Testing.Linearizability;

/// <summary>
/// Clients doing puts, gets and compare-and-swaps on a few keys through several members while a
/// test injects faults, recording every operation for <see cref="RegisterHistory.Check"/>.
/// Consecutive operations of a client go through different members. Bounded: it ends by itself
/// once the faults are done and every client has its share acknowledged, or after three minutes.
/// </summary>
public sealed class RegisterWorkload(Func<int, KV.KVClient> member, int members, string prefix, int clients = 6, int keys = 4, int ackedPerClient = 150)
{
    private readonly ConcurrentBag<Op> _ops = [];
    private readonly CancellationTokenSource _stop = new(TimeSpan.FromMinutes(3));
    private readonly ConcurrentDictionary<int, TaskCompletionSource> _milestones = new();
    private Task[] _clients = [];
    private int _acked;
    private bool _faultsDone;

    public IReadOnlyCollection<Op> Ops => _ops;

    public void Start() => _clients = [.. Enumerable.Range(0, clients).Select(c => Task.Run(() => ClientAsync(c)))];

    /// <summary>Completes once <paramref name="acknowledged"/> operations in all were acknowledged.</summary>
    public Task AckedAsync(int acknowledged)
    {
        var reached = _milestones.GetOrAdd(acknowledged, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        if (Volatile.Read(ref _acked) >= acknowledged) reached.TrySetResult();
        return reached.Task.WaitAsync(_stop.Token);
    }

    /// <summary>Says the faults are over, and waits for the clients to get their share acknowledged.</summary>
    public async Task FinishAsync()
    {
        Volatile.Write(ref _faultsDone, true);
        await Task.WhenAll(_clients);
        if (_stop.IsCancellationRequested) throw new TimeoutException("the workload did not finish in time");
    }

    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private async Task ClientAsync(int c)
    {
        var random = new Random(c);
        var lastSeen = new long[keys];
        int mine = 0;
        for (int i = 0; !_stop.IsCancellationRequested && !(Volatile.Read(ref _faultsDone) && mine >= ackedPerClient); i++)
        {
            int k = random.Next(keys);
            string key = $"{prefix}{k}", value = $"c{c}-{i}";
            var kv = member((c + i) % members);
            int pick = random.Next(10);
            var kind = pick < 4 ? OpKind.Put : pick < 8 ? OpKind.Get : OpKind.Cas;
            long start = Stopwatch.GetTimestamp();
            var deadline = DateTime.UtcNow.AddSeconds(5);
            try
            {
                Op op;
                switch (kind)
                {
                    case OpKind.Put:
                        var put = await kv.PutAsync(new PutRequest { Key = B(key), Value = B(value) }, deadline: deadline);
                        lastSeen[k] = put.Header.Revision;
                        op = new(c, kind, key, start, Stopwatch.GetTimestamp(), true) { Value = value, Revision = put.Header.Revision };
                        break;
                    case OpKind.Get:
                        var get = await kv.RangeAsync(new RangeRequest { Key = B(key) }, deadline: deadline);
                        var found = get.Kvs.FirstOrDefault();
                        lastSeen[k] = found?.ModRevision ?? 0;
                        op = new(c, kind, key, start, Stopwatch.GetTimestamp(), true) { Revision = get.Header.Revision, Read = found?.Value.ToStringUtf8(), ReadModRevision = found?.ModRevision ?? 0 };
                        break;
                    default:
                        long expected = lastSeen[k];
                        var txn = await kv.TxnAsync(new TxnRequest
                        {
                            Compare = { new Compare { Key = B(key), Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = expected } },
                            Success = { new RequestOp { RequestPut = new PutRequest { Key = B(key), Value = B(value) } } },
                        }, deadline: deadline);
                        if (txn.Succeeded) lastSeen[k] = txn.Header.Revision;
                        op = new(c, kind, key, start, Stopwatch.GetTimestamp(), true) { Value = value, Expected = expected, Revision = txn.Header.Revision, Succeeded = txn.Succeeded };
                        break;
                }
                _ops.Add(op);
                mine++;
                int acked = Interlocked.Increment(ref _acked);
                foreach (var (n, reached) in _milestones)
                {
                    if (acked >= n) reached.TrySetResult();
                }
            }
            catch (Exception ex) when (ex is RpcException or ObjectDisposedException) // the member was just replaced
            {
                // Unknown outcome: a write may or may not have happened; a failed read says nothing.
                if (kind != OpKind.Get)
                    _ops.Add(new(c, kind, key, start, Stopwatch.GetTimestamp(), false) { Value = value, Expected = kind == OpKind.Cas ? lastSeen[k] : 0 });
                await Task.Delay(20); // pacing while a member or the journal is down, not synchronisation
            }
        }
    }

    /// <summary>
    /// The server's write history of the workload's keys as one member's watch from revision 1
    /// replays it, up to revision <paramref name="upTo"/>.
    /// </summary>
    public async Task<List<HistoryWrite>> HistoryAsync(ServerProcess from, long upTo)
    {
        var history = new List<HistoryWrite>();
        await using var watch = new WatchSession(from.Channel);
        await watch.WatchAsync(WatchSession.Create(prefix, WatchSession.PrefixEnd(prefix), startRevision: 1));
        long at = 0;
        while (at < upTo)
        {
            var r = await watch.NextAsync(TimeSpan.FromSeconds(10));
            foreach (var e in r.Events)
            {
                if (e.Kv.ModRevision > upTo) return history;
                history.Add(new(e.Kv.Key.ToStringUtf8(), e.Kv.Value.ToStringUtf8(), e.Kv.ModRevision));
                at = e.Kv.ModRevision;
            }
            if (r.Events.Count == 0 && r.Header.Revision >= upTo) break;
        }
        return history;
    }

    /// <summary>
    /// The checks after the faults: the history every member replays is the same, it explains
    /// every answer linearizably, enough was acknowledged, and the faults were felt.
    /// Returns the violations (empty when all holds).
    /// </summary>
    public async Task<List<string>> CheckAsync(IReadOnlyList<ServerProcess> allMembers)
    {
        // A write whose client gave up may still land a little later (the member retries it until
        // its journal timeout): histories are compared up to a fence written after all of them.
        var kv = new KV.KVClient(allMembers[0].Channel);
        long fence = 0;
        for (var deadline = DateTime.UtcNow.AddSeconds(60); fence == 0;)
        {
            try
            {
                fence = (await kv.PutAsync(new PutRequest { Key = B(prefix + "fence"), Value = B("fence") }, deadline: DateTime.UtcNow.AddSeconds(20))).Header.Revision;
            }
            catch (RpcException) when (DateTime.UtcNow < deadline)
            {
            }
        }
        var histories = new List<List<HistoryWrite>>();
        foreach (var m in allMembers) histories.Add((await HistoryAsync(m, fence)).Where(w => w.Key != prefix + "fence").ToList());
        var problems = new List<string>();
        for (int i = 1; i < histories.Count; i++)
        {
            if (!histories[i].SequenceEqual(histories[0])) problems.Add($"member {i}'s watch from revision 1 replays {histories[i].Count} writes, member 0's {histories[0].Count}, and they differ");
        }
        var ops = _ops.ToList();
        problems.AddRange(RegisterHistory.Check(ops, histories[0]));
        if (ops.Count(o => o.Acknowledged) < clients * ackedPerClient) problems.Add($"only {ops.Count(o => o.Acknowledged)} operations acknowledged");
        // A fault is felt as a failed call, or as one the member held until the journal came back
        // (a member may ride out a node's loss inside the call's deadline).
        long stalled = Stopwatch.Frequency; // 1 s
        if (!ops.Any(o => !o.Acknowledged || o.End - o.Start >= stalled)) problems.Add("no operation failed or stalled for a second: the faults were not felt");
        return problems;
    }
}
