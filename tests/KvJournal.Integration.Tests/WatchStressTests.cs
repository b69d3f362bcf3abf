using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Net.Client;
using KvJournal.Testing;
using Mvccpb;
using Xunit;
using Xunit.Abstractions;

namespace KvJournal.Integration.Tests;

/// <summary>
/// 1,000 watchers over overlapping ranges on 20 streams while 8 writers put and delete for up to
/// 10 seconds. Every watcher must receive exactly the events of its range from its start, in
/// order, with no gap or duplicate, and correct prev_kv, checked against the acknowledged history.
/// </summary>
public sealed class WatchStressTests(ITestOutputHelper output)
{
    private const int Streams = 20;
    private const int WatchersPerStream = 50;
    private const int Writers = 8;
    private const int MaxWrites = 12_000;
    private static readonly TimeSpan WriteFor = TimeSpan.FromSeconds(10);
    private static readonly string[] Groups = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];

    private sealed record Change(long Revision, string Key, Event.Types.EventType Type);

    private sealed record WatchPlan(string Key, string? RangeEnd, bool PrevKv, long StartRevision)
    {
        public bool Contains(string key) => RangeEnd is null
            ? key == Key
            : string.CompareOrdinal(key, Key) >= 0 && string.CompareOrdinal(key, RangeEnd) < 0;
    }

    private static WatchPlan Plan(int i, long startRevision)
    {
        var rnd = new Random(i);
        string g = Groups[rnd.Next(Groups.Length)];
        bool prevKv = i % 2 == 0;
        return (i % 10) switch
        {
            0 => new WatchPlan("/st/", WatchSession.PrefixEnd("/st/"), prevKv, startRevision),
            >= 1 and <= 4 => new WatchPlan($"/st/{g}/", WatchSession.PrefixEnd($"/st/{g}/"), prevKv, startRevision),
            >= 5 and <= 8 => new WatchPlan($"/st/{g}/{rnd.Next(50)}", null, prevKv, startRevision),
            _ => new WatchPlan("/st/c/", "/st/f/", prevKv, startRevision),
        };
    }

    [Fact]
    public async Task ThousandWatchersOnTwentyStreamsSeeExactlyTheirEvents()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        // Streams share four connections, as clients multiplex them.
        var channels = Enumerable.Range(0, 4).Select(_ => GrpcChannel.ForAddress($"http://{kvj.Endpoint}",
            new GrpcChannelOptions { MaxReceiveMessageSize = null })).ToArray();
        var sessions = new WatchSession[Streams];
        var plans = new WatchPlan[Streams][];
        try
        {
            // Half the streams watch from now, before any write.
            for (int s = 0; s < Streams / 2; s++) await OpenStreamAsync(s, startRevision: 0);

            var history = new List<Change>();
            int writes = 0;
            var quarterWritten = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var clock = Stopwatch.StartNew();
            var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
            {
                var rnd = new Random(1000 + w);
                var mine = new List<Change>();
                int n;
                while (clock.Elapsed < WriteFor && (n = Interlocked.Increment(ref writes)) <= MaxWrites)
                {
                    if (n == MaxWrites / 4) quarterWritten.TrySetResult();
                    string key = $"/st/{Groups[rnd.Next(Groups.Length)]}/{rnd.Next(50)}";
                    if (rnd.Next(4) > 0)
                    {
                        var r = await kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFromUtf8($"w{w}-{mine.Count}") });
                        mine.Add(new Change(r.Header.Revision, key, Event.Types.EventType.Put));
                    }
                    else
                    {
                        var r = await kvj.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = ByteString.CopyFromUtf8(key) });
                        if (r.Deleted > 0) mine.Add(new Change(r.Header.Revision, key, Event.Types.EventType.Delete));
                    }
                }
                lock (history) history.AddRange(mine);
            })).ToArray();

            // The other half join mid-flight and replay from revision 2 while writes continue.
            // ... once a quarter of the writes are issued (or half the write time passed, on a slow machine).
            await Task.WhenAny(quarterWritten.Task, Task.WhenAll(writers), Task.Delay(WriteFor / 2));
            for (int s = Streams / 2; s < Streams; s++) await OpenStreamAsync(s, startRevision: 2);
            await Task.WhenAll(writers);
            var writeTime = clock.Elapsed;

            history.Sort((x, y) => x.Revision.CompareTo(y.Revision));
            Assert.Equal(history.Count, history.Select(c => c.Revision).Distinct().Count());
            long last = history[^1].Revision;

            // A progress answer on each stream means each of its watchers has everything up to it.
            var received = new List<WatchResponse>[Streams];
            await Task.WhenAll(Enumerable.Range(0, Streams).Select(async s =>
            {
                var (before, revision) = await sessions[s].ReadUntilProgressAsync(wait: TimeSpan.FromSeconds(120));
                Assert.True(revision >= last, $"stream {s}: progress at {revision}, last write {last}");
                received[s] = before;
            }));
            var deliverTime = clock.Elapsed;

            var prevPut = PreviousPuts(history);
            long delivered = 0;
            for (int s = 0; s < Streams; s++)
            {
                var created = received[s].Where(r => r.Created).ToList();
                Assert.Equal(WatchersPerStream, created.Count);
                for (int k = 0; k < WatchersPerStream; k++)
                {
                    var plan = plans[s][k];
                    long id = created[k].WatchId;
                    long from = plan.StartRevision == 0 ? created[k].Header.Revision + 1 : plan.StartRevision;
                    var expected = history.Where(c => c.Revision >= from && plan.Contains(c.Key)).ToList();
                    var events = received[s].Where(r => r.WatchId == id && !r.Created).SelectMany(r => r.Events).ToList();
                    var actual = events.Select(e => new Change(e.Kv.ModRevision, e.Kv.Key.ToStringUtf8(), e.Type)).ToList();
                    if (!expected.SequenceEqual(actual))
                    {
                        int at = expected.Zip(actual).TakeWhile(p => p.First == p.Second).Count();
                        Assert.Fail($"stream {s} watcher {id} ({plan}): {actual.Count} events, expected {expected.Count}; first difference at {at}: " +
                            $"expected {expected.ElementAtOrDefault(at)}, got {actual.ElementAtOrDefault(at)}");
                    }
                    foreach (var e in events)
                    {
                        long want = prevPut.GetValueOrDefault((e.Kv.ModRevision, e.Kv.Key.ToStringUtf8()));
                        long got = plan.PrevKv && e.PrevKv is not null ? e.PrevKv.ModRevision : 0;
                        Assert.True((plan.PrevKv ? want : 0) == got, $"stream {s} watcher {id}: prev_kv of {e.Kv.Key.ToStringUtf8()}@{e.Kv.ModRevision} is {got}, expected {want}");
                    }
                    delivered += events.Count;
                }
            }
            output.WriteLine($"{history.Count} writes in {writeTime.TotalSeconds:F1} s; {delivered} events delivered to {Streams * WatchersPerStream} watchers; all streams caught up {(deliverTime - writeTime).TotalMilliseconds:F0} ms after the last write");
        }
        finally
        {
            foreach (var s in sessions) if (s is not null) await s.DisposeAsync();
            foreach (var c in channels) c.Dispose();
        }

        async Task OpenStreamAsync(int s, long startRevision)
        {
            sessions[s] = new WatchSession(channels[s % channels.Length]);
            plans[s] = new WatchPlan[WatchersPerStream];
            for (int k = 0; k < WatchersPerStream; k++)
            {
                var plan = plans[s][k] = Plan(s * WatchersPerStream + k, startRevision);
                await sessions[s].CreateAsync(WatchSession.Create(plan.Key, plan.RangeEnd, startRevision, plan.PrevKv));
            }
        }
    }

    // For each change of a key that had a live value just before it, that value's revision (what prev_kv must carry).
    private static Dictionary<(long, string), long> PreviousPuts(List<Change> history)
    {
        var live = new Dictionary<string, long>();
        var prev = new Dictionary<(long, string), long>();
        foreach (var c in history)
        {
            if (live.TryGetValue(c.Key, out long p)) prev[(c.Revision, c.Key)] = p;
            if (c.Type == Event.Types.EventType.Put) live[c.Key] = c.Revision;
            else live.Remove(c.Key);
        }
        return prev;
    }
}
