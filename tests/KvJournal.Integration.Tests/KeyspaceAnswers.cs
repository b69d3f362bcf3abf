using Etcdserverpb;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// A server's answers as comparable lines, for tests that move a keyspace between etcd and
/// KvJournal and check that both sides answer alike: a range, and the watch history of a range.
/// </summary>
internal static class KeyspaceAnswers
{
    public static List<string> Kvs(RangeResponse r) =>
        [$"rev {r.Header.Revision} count {r.Count}", .. r.Kvs.Select(kv => $"{kv.Key.ToStringUtf8()}={kv.Value.ToStringUtf8()} c{kv.CreateRevision} m{kv.ModRevision} v{kv.Version} l{kv.Lease}")];

    /// <summary>Every event on [key, rangeEnd) from revision <paramref name="from"/> up to <paramref name="head"/>, with prev_kv.</summary>
    public static async Task<List<string>> HistoryAsync(ServerProcess server, string key, string rangeEnd, long from, long head)
    {
        await using var watch = new WatchSession(server.Channel);
        var created = await watch.WatchAsync(WatchSession.Create(key, rangeEnd, startRevision: from, prevKv: true));
        var events = new List<string>();
        long seen = 0;
        while (seen < head)
        {
            WatchResponse response;
            try { response = await watch.NextAsync(TimeSpan.FromSeconds(10)); }
            catch (TimeoutException) { throw new InvalidOperationException($"stuck at {seen} of {head} after {created}:\n{string.Join("\n", events)}"); }
            foreach (var e in response.Events)
            {
                events.Add($"{e.Type} {e.Kv.Key.ToStringUtf8()}={e.Kv.Value.ToStringUtf8()} m{e.Kv.ModRevision} v{e.Kv.Version} prev {e.PrevKv?.Value.ToStringUtf8()} m{e.PrevKv?.ModRevision}");
                seen = e.Kv.ModRevision;
            }
        }
        Assert.True(created.Created);
        return events;
    }
}
