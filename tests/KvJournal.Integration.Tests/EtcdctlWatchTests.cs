using System.Globalization;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// etcdctl watch against kvjournal and the reference etcd over the same history: the same
/// invocations must print the same events. A watch never ends by itself, so each one is read up
/// to a progress notification at or past the last write; progress is only sent once a watcher is
/// caught up, so everything before it is the complete answer.
/// </summary>
public sealed class EtcdctlWatchTests
{
    private static readonly string[] History =
    [
        "put foo 1",
        "put foo/a x",
        "put fob y",
        "put foo 2",
        "del foo",
        "put foo 3",
        "put foo/b z",
        "del foo --prefix",
        "put foo 4",
        "put zed last",
    ];

    private static readonly string[][] Watches =
    [
        ["watch", "foo", "--rev", "1"],
        ["watch", "foo", "--rev", "4", "--prev-kv"],
        ["watch", "--prefix", "foo", "--rev", "2", "--prev-kv"],
        ["watch", "--prefix", "fo", "--rev", "1"],
        ["watch", "fob", "foz", "--rev", "1", "--prev-kv"],
        ["watch", "foo", "--rev", "3", "-w", "fields"],
    ];

    private const string ProgressPrefix = "progress notify: ";

    private static long ProgressRevision(string line) =>
        line.StartsWith(ProgressPrefix, StringComparison.Ordinal) ? long.Parse(line[ProgressPrefix.Length..], CultureInfo.InvariantCulture) : -1;

    // Header fields naming the member differ between the two servers; nothing else may.
    private static bool MemberField(string line) =>
        line.StartsWith("\"ClusterID\"", StringComparison.Ordinal) || line.StartsWith("\"MemberID\"", StringComparison.Ordinal) || line.StartsWith("\"RaftTerm\"", StringComparison.Ordinal);

    private static List<string> Events(List<string> lines) => [.. lines.Where(l => ProgressRevision(l) < 0 && !MemberField(l))];

    [Fact]
    public async Task EtcdctlWatchPrintsTheSameAsReferenceEtcd()
    {
        await using var kvj = await KvJournalProcess.StartAsync(null, "--watch-progress-notify-interval", "200ms");
        await using var etcd = await ReferenceEtcdProcess.StartAsync("--experimental-watch-progress-notify-interval", "200ms");
        foreach (var cmd in History)
        {
            var theirs = await Etcdctl.RunAsync(etcd.Endpoint, null, cmd.Split(' '));
            var ours = await Etcdctl.RunAsync(kvj.Endpoint, null, cmd.Split(' '));
            Assert.Equal(theirs.Stdout, ours.Stdout);
        }
        long last = History.Length + 1;

        foreach (var args in Watches)
        {
            var theirs = await WatchToAsync(etcd, last, [.. args, "--progress-notify"]);
            var ours = await WatchToAsync(kvj, last, [.. args, "--progress-notify"]);
            Assert.True(theirs.Count > 0, $"etcdctl {string.Join(' ', args)} printed no event");
            Assert.Equal(string.Join('\n', theirs), string.Join('\n', ours));
        }

        // Interactive: a watch, then "progress" (repeated while etcd ignores it during catch-up).
        foreach (var line in new[] { "watch --prefix foo --rev 2 --prev-kv", "watch fob --rev 1" })
        {
            var theirs = await InteractiveAsync(etcd, line);
            var ours = await InteractiveAsync(kvj, line);
            Assert.True(theirs.Count > 0, $"etcdctl watch -i: {line} printed no event");
            Assert.Equal(string.Join('\n', theirs), string.Join('\n', ours));
        }

        // Live: a synced watcher sees writes made after it started.
        foreach (var server in new ServerProcess[] { etcd, kvj })
        {
            await using var live = new EtcdctlSession(server.Endpoint, "watch", "--prefix", "live/", "--prev-kv", "--progress-notify");
            await live.ReadUntilAsync(l => ProgressRevision(l) >= 0);
            await Etcdctl.RunAsync(server.Endpoint, null, "put", "live/1", "a");
            await Etcdctl.RunAsync(server.Endpoint, null, "put", "live/1", "b");
            await Etcdctl.RunAsync(server.Endpoint, null, "del", "live/", "--prefix");
            var lines = Events(await live.ReadUntilAsync(l => ProgressRevision(l) >= last + 3));
            Assert.Equal(["PUT", "live/1", "a", "PUT", "live/1", "a", "live/1", "b", "DELETE", "live/1", "b", "live/1", ""], lines);
        }

        // A compacted start revision: etcdctl reports the cancellation and exits.
        await Etcdctl.RunAsync(etcd.Endpoint, null, "compaction", "5");
        await Etcdctl.RunAsync(kvj.Endpoint, null, "compaction", "5");
        var etcdCompacted = await Etcdctl.RunAsync(etcd.Endpoint, null, "watch", "foo", "--rev", "2");
        var kvjCompacted = await Etcdctl.RunAsync(kvj.Endpoint, null, "watch", "foo", "--rev", "2");
        Assert.Equal((etcdCompacted.ExitCode, etcdCompacted.Stdout, etcdCompacted.Stderr), (kvjCompacted.ExitCode, kvjCompacted.Stdout, kvjCompacted.Stderr));
        Assert.Contains("required revision has been compacted", kvjCompacted.Stdout + kvjCompacted.Stderr, StringComparison.Ordinal);
    }

    private static async Task<List<string>> WatchToAsync(ServerProcess server, long revision, string[] args)
    {
        await using var watch = new EtcdctlSession(server.Endpoint, args);
        return Events(await watch.ReadUntilAsync(l => ProgressRevision(l) >= revision));
    }

    private static async Task<List<string>> InteractiveAsync(ServerProcess server, string watchLine)
    {
        await using var session = new EtcdctlSession(server.Endpoint, "watch", "-i");
        await session.SendLineAsync(watchLine);
        return Events(await session.ReadUntilAsync(l => ProgressRevision(l) >= 0, poke: () => session.SendLineAsync("progress")));
    }
}
