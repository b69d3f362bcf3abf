using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// Users, roles and permissions through etcdctl, against kvjournal and the reference etcd in turn:
/// every command must print the same (exit code, output, error line), including the refusals.
/// </summary>
public sealed class EtcdctlAuthTests
{
    private const string Root = "--user=root:rootpw";
    private const string Alice = "--user=alice:alicepw";

    // One command per line; "<< text" feeds text (\n-separated) on stdin.
    private static readonly string[] Script =
    [
        "user add root:rootpw",
        "user add carol --no-password",
        "user list",
        "auth status",
        "role add root",
        "user grant-role root root",
        "user get root",
        "auth enable",
        "auth status",
        "put k v",
        "get k",
        $"{Root} auth status",
        $"{Root} put k v",
        $"{Root} user add alice:alicepw",
        $"{Root} user add bob:bobpw",
        $"{Root} user add alice:again",
        $"{Root} role add reader",
        $"{Root} role add writer",
        $"{Root} role add reader",
        $"{Root} role grant-permission reader read --prefix /app/",
        $"{Root} role grant-permission writer readwrite /app/config",
        $"{Root} role grant-permission writer write --from-key /z",
        $"{Root} role grant-permission writer readwrite /r1 /r5",
        $"{Root} role grant-permission writer readwrite /r5 /r8",
        $"{Root} role grant-permission writer readwrite /r9 /r1",
        $"{Root} role grant-permission nobody read /x",
        $"{Root} role get reader",
        $"{Root} role get writer",
        $"{Root} role get root",
        $"{Root} role list",
        $"{Root} user grant-role alice reader",
        $"{Root} user grant-role alice writer",
        $"{Root} user grant-role alice writer",
        $"{Root} user grant-role bob nosuchrole",
        $"{Root} user grant-role nobody reader",
        $"{Root} user get alice",
        $"{Root} user list",
        $"{Alice} put /app/config on",
        $"{Alice} get /app/ --prefix",
        $"{Alice} put /app/other x",
        $"{Alice} put /z9 y",
        $"{Alice} get /z9",
        $"{Alice} put /r3 y",
        $"{Alice} put /r6 y",
        $"{Alice} get /r1 /r8",
        $"{Alice} get /r1 /r9",
        $"{Alice} get /app/config --consistency=s",
        $"{Alice} del /app/config --prev-kv",
        $"{Alice} put /app/config again --prev-kv",
        $"{Alice} txn -i << value(\"/app/config\") = \"again\"\n\nput /app/config third\n\nget /r3\n\n",
        $"{Alice} txn -i << value(\"/app/config\") = \"again\"\n\nput /secret x\n\n\n",
        $"{Alice} watch /b",
        "--user=bob:bobpw get /app/config",
        "--user=bob:wrongpw get /app/config",
        "--user=carol:anything get /app/config",
        "--user=nobody:pw get /app/config",
        $"{Alice} user list",
        $"{Alice} user get alice",
        $"{Alice} user get bob",
        $"{Alice} role get reader",
        $"{Alice} role get root",
        $"{Alice} role add mine",
        $"{Alice} auth disable",
        $"{Alice} compaction 2",
        $"{Alice} alarm list",
        "alarm list",
        $"{Root} role revoke-permission writer /r1 /r5",
        $"{Root} role revoke-permission writer /r1 /r5",
        $"{Alice} put /r3 y",
        $"{Root} user revoke-role alice writer",
        $"{Root} user revoke-role alice writer",
        $"{Root} user passwd alice --interactive=false << newpw\n",
        $"{Alice} get /app/ --prefix",
        "--user=alice:newpw get /app/ --prefix",
        $"{Root} role delete reader",
        $"{Root} role delete reader",
        $"{Root} user get alice",
        $"{Root} user delete bob",
        $"{Root} user delete bob",
        $"{Root} user delete root",
        $"{Root} role delete root",
        $"{Root} user revoke-role root root",
        $"{Root} auth disable",
        "auth status",
        "get /app/config",
        "user delete alice",
        "user list",
    ];

    [Fact]
    public async Task AuthSessionMatchesReferenceEtcd()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        Assert.Null(await Etcdctl.FirstDifferenceAsync(etcd.Endpoint, kvj.Endpoint, Script));
    }

    [Theory]
    [InlineData("kvjournal")]
    [InlineData("etcd")]
    public async Task PermittedWatchWithUserSeesEvents(string serverName)
    {
        await using ServerProcess server = serverName == "etcd" ? await ReferenceEtcdProcess.StartAsync() : await KvJournalProcess.StartAsync();
        foreach (var line in new[]
        {
            "user add root:rootpw", "user grant-role root root", "auth enable", $"{Root} user add alice:alicepw",
            $"{Root} role add apps", $"{Root} role grant-permission apps readwrite --prefix /app/", $"{Root} user grant-role alice apps",
        })
        {
            var r = await Etcdctl.RunAsync(server.Endpoint, null, line.Split(' '));
            Assert.True(r.ExitCode == 0, $"etcdctl {line}: {r.Stderr}");
        }
        await using var watch = new EtcdctlSession(server.Endpoint, Alice, "watch", "/app/", "--prefix");
        // The watch is registered before etcdctl prints anything; the put is retried until it shows.
        var seen = await watch.ReadUntilAsync(l => l == "ready", poke: async () =>
            await Etcdctl.RunAsync(server.Endpoint, null, Alice, "put", "/app/w", "ready"));
        Assert.Equal(["PUT", "/app/w", "ready"], seen.Where(l => !l.StartsWith("stderr:", StringComparison.Ordinal)).TakeLast(3));
    }
}
