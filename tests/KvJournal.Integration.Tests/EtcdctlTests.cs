using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// etcd's own etcdctl against kvjournal and against the reference etcd: the same commands in the
/// same order must print the same thing (exit code, output, error line). Header fields that name
/// the member (cluster id, member id, raft term) are the only ones allowed to differ.
/// </summary>
public sealed class EtcdctlTests
{
    // One command per line: the arguments, then optionally "<<" and a file name under Stdin below.
    private static readonly string[] Script =
    [
        "put foo bar",
        "put foo baz --prev-kv",
        "get foo",
        "get foo -w fields",
        "put a/1 one",
        "put a/2 two",
        "put a/3 three",
        "put b 1",
        "put c 2 --prev-kv",
        "get a/ --prefix",
        "get a/ --prefix --limit 2 -w fields",
        "get a/ --from-key",
        "get a/1 a/3",
        "get a/ --prefix --sort-by=MODIFY --order=DESCEND",
        "get a/ --prefix --sort-by=VALUE --order=ASCEND",
        "get a/ --prefix --sort-by=CREATE --order=DESCEND --limit 2",
        "get a/ --prefix --sort-by=VERSION",
        "get a/ --prefix --keys-only",
        "get a/ --prefix --count-only -w fields",
        "get a/ --prefix --print-value-only",
        "get foo --rev 2",
        "get foo --rev 3 -w fields",
        "get foo --consistency=s",
        "get a/ --prefix --consistency=s --limit 1 -w fields",
        "put a/1 uno",
        "get a/1 -w fields",
        "del a/2",
        "del a/2",
        "del a/ --prefix --prev-kv",
        "get --from-key '' -w fields",
        "txn -i << txn-success",
        "txn -i << txn-failure",
        "txn -w fields -i << txn-success",
        "get t/ --prefix -w fields",
        "compaction 5",
        "get foo --rev 4",
        "get foo --rev 5 -w fields",
        "get foo --rev 100",
        "compaction 3",
        "compaction 1000",
        "compaction --physical 8",
        "del --from-key a",
        "get --from-key '' -w fields",
    ];

    private static readonly Dictionary<string, string> Stdin = new()
    {
        ["txn-success"] = "value(\"foo\") = \"baz\"\nmod(\"b\") > \"0\"\n\nput t/1 \"x\"\ndel b\nget c\n\nput t/2 \"never\"\n\n",
        ["txn-failure"] = "version(\"foo\") = \"7\"\n\nput t/3 \"never\"\n\nput t/4 \"else\"\nget foo\n\n",
    };

    [Fact]
    public async Task EtcdctlSessionMatchesReferenceEtcd()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        Assert.Null(await Etcdctl.FirstDifferenceAsync(etcd.Endpoint, kvj.Endpoint, Script, name => Stdin[name]));
    }

    [Fact]
    public async Task PutGetDelRoundTripOverEtcdctl()
    {
        // Literal expectations too, so a shared mistake of both servers would not pass unseen.
        await using var kvj = await KvJournalProcess.StartAsync();
        Assert.Equal("OK", (await Etcdctl.RunAsync(kvj.Endpoint, null, "put", "greeting", "hello")).Stdout.Trim());
        Assert.Equal("greeting\nhello", (await Etcdctl.RunAsync(kvj.Endpoint, null, "get", "greeting")).Stdout.Trim());
        Assert.Equal("1", (await Etcdctl.RunAsync(kvj.Endpoint, null, "del", "greeting")).Stdout.Trim());
        Assert.Equal("", (await Etcdctl.RunAsync(kvj.Endpoint, null, "get", "greeting")).Stdout.Trim());
        var compacted = await Etcdctl.RunAsync(kvj.Endpoint, null, "get", "greeting", "--rev", "9");
        Assert.NotEqual(0, compacted.ExitCode);
        Assert.Contains("etcdserver: mvcc: required revision is a future revision", compacted.Stderr);
    }
}
