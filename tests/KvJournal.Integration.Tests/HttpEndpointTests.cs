using System.Text.Json;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// curl against the client port, which serves gRPC and HTTP/1.1 side by side as etcd's does:
/// /health, /livez, /readyz and /version answer like the reference etcd's; /metrics carries etcd's
/// metric names with kvjournal's values.
/// </summary>
public sealed class HttpEndpointTests
{
    private static Task<Curl.Result> CurlAsync(ServerProcess server, string path) => Curl.GetAsync($"http://{server.Endpoint}{path}");

    [Fact]
    public async Task HealthLivezReadyzAndVersionAnswerLikeEtcd()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        foreach (var path in new[] { "/health", "/livez", "/readyz", "/livez?verbose", "/readyz?verbose", "/health?exclude=NOSPACE" })
        {
            var theirs = await CurlAsync(etcd, path);
            var ours = await CurlAsync(kvj, path);
            Assert.Equal(200, ours.Status);
            if (path.EndsWith("?verbose", StringComparison.Ordinal))
            {
                // etcd lists its checks in a map's order: compare the lines as a set.
                Assert.Equal(theirs.Status, ours.Status);
                Assert.Equal(theirs.Body.Split('\n').Order(StringComparer.Ordinal), ours.Body.Split('\n').Order(StringComparer.Ordinal));
            }
            else Assert.Equal(theirs, ours);
        }
        var version = JsonDocument.Parse((await CurlAsync(kvj, "/version")).Body).RootElement;
        var etcdVersion = JsonDocument.Parse((await CurlAsync(etcd, "/version")).Body).RootElement;
        Assert.Equal(etcdVersion.EnumerateObject().Select(p => p.Name), version.EnumerateObject().Select(p => p.Name));
        Assert.Equal("3.6.0", version.GetProperty("etcdserver").GetString());

        // gRPC keeps working on the same port after HTTP/1.1 requests.
        var put = await Etcdctl.RunAsync(kvj.Endpoint, null, "put", "after-http", "1");
        Assert.Equal("OK", put.Stdout.Trim());
    }

    [Fact]
    public async Task MetricsUseEtcdNamesAndCountRequests()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        for (int i = 0; i < 5; i++) await Etcdctl.RunAsync(kvj.Endpoint, null, "put", $"m{i}", "v");
        var metrics = await CurlAsync(kvj, "/metrics");
        Assert.Equal(200, metrics.Status);
        var lines = metrics.Body.Split('\n');
        Assert.Contains("etcd_server_has_leader 1", lines);
        Assert.Contains("etcd_debugging_mvcc_keys_total 5", lines);
        Assert.Contains("etcd_debugging_mvcc_current_revision 6", lines);
        Assert.Contains(lines, l => l.StartsWith("etcd_mvcc_db_total_size_in_bytes ", StringComparison.Ordinal));
        Assert.Contains("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 5", lines);
        Assert.Contains("kvjournal_journal_append_duration_seconds_count 7", lines); // bootstrap, member announcement, 5 puts
        Assert.Contains(lines, l => l.StartsWith("dotnet_gc_pause_seconds_total ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("dotnet_gc_collections_total{generation=\"2\"} ", StringComparison.Ordinal));
    }

    /// <summary>
    /// A stream the client ends by resetting it is counted under grpc-go's code name ("Canceled"),
    /// as etcd counts it, so dashboards and alerts written for etcd match.
    /// </summary>
    [Fact]
    public async Task AResetStreamIsCountedAsCanceledLikeEtcd()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        const string Counted = "grpc_server_handled_total{grpc_code=\"Canceled\",grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 1";
        foreach (ServerProcess server in new ServerProcess[] { etcd, kvj })
        {
            using (var watch = new Watch.WatchClient(server.Channel).Watch())
            {
                await watch.RequestStream.WriteAsync(new WatchRequest { CreateRequest = new WatchCreateRequest { Key = ByteString.CopyFromUtf8("w") } });
                Assert.True(await watch.ResponseStream.MoveNext(CancellationToken.None));
            } // disposed: the client resets the stream
            var deadline = DateTime.UtcNow.AddSeconds(10);
            string[] lines;
            while (!(lines = (await CurlAsync(server, "/metrics")).Body.Split('\n')).Contains(Counted))
            {
                Assert.True(DateTime.UtcNow < deadline, string.Join('\n', lines.Where(l => l.Contains("etcdserverpb.Watch", StringComparison.Ordinal))));
                await Task.Yield();
            }
        }
    }
}
