using System.Text.RegularExpressions;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// etcdctl's lease commands against kvjournal and the reference etcd: the same script must print
/// the same, once each server's lease ids (chosen by the server) are replaced by names and the
/// remaining seconds of a live lease (which tick while the script runs) are blanked.
/// </summary>
public sealed partial class EtcdctlLeaseTests
{
    // "$A" and "$B" stand for the ids of the first and second granted lease.
    private static readonly string[] Script =
    [
        "lease grant 600",
        "lease grant 1",
        "lease list",
        "put --lease=$A k1 v1",
        "put --lease=$A k2 v2",
        "put --lease=$B k3 v3",
        "get k --prefix -w fields",
        "lease timetolive $A --keys",
        "lease timetolive $A",
        "lease keep-alive --once $A",
        "put k2 detached",
        "lease timetolive $A --keys",
        "put --ignore-lease k1 kept",
        "lease timetolive $A --keys",
        "put --lease=1234 k4 v4",
        "lease revoke $A",
        "get k --prefix",
        "lease timetolive $A",
        "lease keep-alive --once $A",
        "lease revoke $A",
        "lease grant 99999999999",
        "lease revoke $B",
        "lease list",
    ];

    [Fact]
    public async Task LeaseCommandsMatchReferenceEtcd()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        var etcdIds = new List<string>();
        var kvjIds = new List<string>();
        foreach (var line in Script)
        {
            var theirs = await RunAsync(etcd, line, etcdIds);
            var ours = await RunAsync(kvj, line, kvjIds);
            Assert.True(theirs == ours, $"etcdctl {line}\n etcd:      {theirs}\n kvjournal: {ours}");
        }
        Assert.Equal(2, kvjIds.Count);
    }

    [Fact]
    public async Task KeepAliveCommandRenewsUntilStopped()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        var granted = await Etcdctl.RunAsync(kvj.Endpoint, null, "lease", "grant", "3");
        string id = GrantedId().Match(granted.Stdout).Groups[1].Value;
        await using var keepAlive = new EtcdctlSession(kvj.Endpoint, "lease", "keep-alive", id);
        // etcdctl renews every TTL/3: five renewals span about two TTLs; the lease is then still alive.
        int renewals = 0;
        await keepAlive.ReadUntilAsync(l => l.Contains("keepalived with TTL(3)", StringComparison.Ordinal) && ++renewals == 5, wait: TimeSpan.FromSeconds(30));
        var ttl = await Etcdctl.RunAsync(kvj.Endpoint, null, "lease", "timetolive", id);
        Assert.Contains("granted with TTL(3s)", ttl.Stdout, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(ServerProcess server, string line, List<string> ids)
    {
        string expanded = line.Replace("$A", ids.ElementAtOrDefault(0) ?? "0", StringComparison.Ordinal)
            .Replace("$B", ids.ElementAtOrDefault(1) ?? "0", StringComparison.Ordinal);
        var result = await Etcdctl.RunAsync(server.Endpoint, null, expanded.Split(' '));
        if (line.StartsWith("lease grant", StringComparison.Ordinal) && GrantedId().Match(result.Stdout) is { Success: true } m) ids.Add(m.Groups[1].Value);
        result = result with { Stdout = Named(result.Stdout, ids), Stderr = Named(result.Stderr, ids) };
        if (line == "lease list")
        {
            // etcd lists leases in its map's order; compare them as a set.
            var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            result = result with { Stdout = string.Join('\n', lines.Take(1).Concat(lines.Skip(1).Order(StringComparer.Ordinal))) };
        }
        string text = result.Normalized();
        text = Remaining().Replace(text, "remaining(<n>s)");
        // etcd lists a lease's keys in its map's order too.
        return AttachedKeys().Replace(text, k => $"attached keys([{string.Join(' ', k.Groups[1].Value.Split(' ').Order(StringComparer.Ordinal))}])");
    }

    private static string Named(string text, List<string> ids)
    {
        for (int i = 0; i < ids.Count; i++)
        {
            string name = $"<lease {(char)('A' + i)}>";
            // etcdctl prints ids in hex and, in -w fields, in decimal.
            text = text.Replace(ids[i], name, StringComparison.Ordinal)
                .Replace(Convert.ToInt64(ids[i], 16).ToString(System.Globalization.CultureInfo.InvariantCulture), name, StringComparison.Ordinal);
        }
        return text;
    }

    [GeneratedRegex("lease ([0-9a-f]{16}) granted with TTL")]
    private static partial Regex GrantedId();

    [GeneratedRegex(@"attached keys\(\[([^\]]*)\]\)")]
    private static partial Regex AttachedKeys();

    [GeneratedRegex(@"remaining\((\d+)s\)")]
    private static partial Regex Remaining();
}
