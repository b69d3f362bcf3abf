using System.Diagnostics;
using System.Text.Json;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>etcd-style configuration: config file, ETCD_* variables, flags; auto-compaction; the metrics URL.</summary>
public sealed class ServerConfigTests
{
    [Fact]
    public async Task FlagsOverrideTheEnvironmentWhichOverridesTheConfigFile()
    {
        string dir = Paths.NewTempDir("config");
        try
        {
            string config = Path.Combine(dir, "kvjournal.yml");
            await File.WriteAllTextAsync(config, """
                # etcd's config file shape: keys named like the flags
                name: from-config
                max-txn-ops: 3
                max-request-bytes: 1000
                quota-backend-bytes: null
                auto-compaction-mode: 'periodic'
                auto-compaction-retention: "1s"
                """);
            var env = new Dictionary<string, string> { ["ETCD_NAME"] = "from-environment", ["ETCD_MAX_TXN_OPS"] = "4", ["ETCD_MAX_REQUEST_BYTES"] = "3000" };
            await using var kvj = await KvJournalProcess.StartWithEnvironmentAsync(env, "--config-file", config, "--max-txn-ops", "5");

            var members = await Etcdctl.RunAsync(kvj.Endpoint, null, "member", "list", "-w", "json");
            // The test harness passes --name kvj-test, which beats both.
            Assert.Equal("kvj-test", JsonDocument.Parse(members.Stdout).RootElement.GetProperty("members")[0].GetProperty("name").GetString());
            // The environment's request limit (3000) beats the config file's (1000).
            await kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("big"), Value = ByteString.CopyFrom(new byte[2000]) });
            var tooLarge = await Assert.ThrowsAsync<RpcException>(() => kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("big"), Value = ByteString.CopyFrom(new byte[4000]) }).ResponseAsync);
            Assert.Equal("etcdserver: request is too large", tooLarge.Status.Detail);
            var sixOps = new TxnRequest();
            for (int i = 0; i < 6; i++) sixOps.Success.Add(new RequestOp { RequestRange = new RangeRequest { Key = ByteString.CopyFromUtf8($"k{i}") } });
            var tooMany = await Assert.ThrowsAsync<RpcException>(() => kvj.Kv.TxnAsync(sixOps).ResponseAsync);
            Assert.Equal("etcdserver: too many operations in txn request", tooMany.Status.Detail);
            sixOps.Success.RemoveAt(5);
            await kvj.Kv.TxnAsync(sixOps); // five are allowed: the flag won

            // Periodic auto-compaction with a 1 s retention compacts history away on its own.
            for (int i = 0; i < 5; i++) await kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("c"), Value = ByteString.CopyFromUtf8($"{i}") });
            var clock = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    await kvj.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("c"), Revision = 2 });
                }
                catch (RpcException ex) when (ex.Status.Detail == "etcdserver: mvcc: required revision has been compacted")
                {
                    break;
                }
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "history was not compacted within 20 s");
                // Each probe is a linearizable read, itself a round trip through the member.
                await kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("tick"), Value = ByteString.Empty });
            }
        }
        finally
        {
            Paths.DeleteDir(dir);
        }
    }

    [Fact]
    public async Task MetricsUrlServesMetricsAndHealth()
    {
        int metricsPort = Ports.Free();
        await using var kvj = await KvJournalProcess.StartAsync(null, "--listen-metrics-urls", $"http://127.0.0.1:{metricsPort}");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        string metrics = await http.GetStringAsync(new Uri($"http://127.0.0.1:{metricsPort}/metrics"));
        Assert.Contains("etcd_server_has_leader 1", metrics, StringComparison.Ordinal);
        Assert.Equal("{\"health\":\"true\",\"reason\":\"\"}", await http.GetStringAsync(new Uri($"http://127.0.0.1:{metricsPort}/health")));
        // The JSON gateway is the client port's, not the metrics port's.
        var put = await http.PostAsync(new Uri($"http://127.0.0.1:{metricsPort}/v3/kv/put"), new StringContent("""{"key":"Zm9v","value":"YmFy"}"""));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, put.StatusCode);
        var onClientPort = await http.PostAsync(new Uri($"http://{kvj.Endpoint}/v3/kv/range"), new StringContent("""{"key":"Zm9v"}"""));
        Assert.Equal(System.Net.HttpStatusCode.OK, onClientPort.StatusCode);
        Assert.DoesNotContain("\"kvs\"", await onClientPort.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
