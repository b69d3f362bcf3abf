using System.Globalization;
using System.Text;
using KvJournal.Member.Face;
using KvJournal.Server.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace KvJournal.Server.Api.Http;

/// <summary>
/// etcd's HTTP endpoints on the client port: /health (JSON), /livez and /readyz (text, with
/// ?verbose), /version and /metrics (Prometheus text, etcd's metric names where they mean the same).
/// </summary>
public static class HttpEndpoints
{
    private const string TextPlain = "text/plain; charset=utf-8";

    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/health", async (ShardRouter router, HttpContext http) =>
        {
            var face = router.For(http);
            // etcd: any active alarm not named in ?exclude= makes the member unhealthy.
            var excluded = http.Request.Query["exclude"];
            string? problem = face.AlarmProblem(name => excluded.Contains(name)) ?? await face.ServingProblemAsync(http.RequestAborted).ConfigureAwait(false);
            http.Response.StatusCode = problem is null ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
            // etcd's failing body ends with a newline, its healthy one does not.
            http.Response.ContentType = TextPlain;
            await http.Response.WriteAsync(problem is null ? "{\"health\":\"true\",\"reason\":\"\"}" : $"{{\"health\":\"false\",\"reason\":\"{problem}\"}}\n").ConfigureAwait(false);
        });
        app.MapGet("/livez", (ShardRouter router, HttpContext http) =>
            Checks(http, [("serializable_read", router.For(http).ApplyProblem)]));
        app.MapGet("/readyz", async (ShardRouter router, HttpContext http) =>
        {
            var face = router.For(http);
            // Ready once this member has applied everything the journal had made durable.
            string? linearizable = await face.ServingProblemAsync(http.RequestAborted).ConfigureAwait(false);
            await Checks(http, [("data_corruption", null), ("serializable_read", face.ApplyProblem),
                ("linearizable_read", linearizable), ("non_learner", null)]).ConfigureAwait(false);
        });
        app.MapGet("/version", (HttpContext http) =>
        {
            http.Response.ContentType = "application/json";
            return http.Response.WriteAsync($"{{\"etcdserver\":\"{ServerVersion.Etcd}\",\"etcdcluster\":\"{ServerVersion.Cluster}\"}}");
        });
        app.MapGet("/metrics", (ShardRouter router, GrpcMetrics grpc, HttpContext http) =>
        {
            var face = router.For(http);
            http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            return http.Response.WriteAsync(Metrics(face.Gauges(), face.Backups, face.Throttle, grpc));
        });
    }

    // etcd's livez/readyz format: "ok" when all pass; with ?verbose one line per check first.
    private static Task Checks(HttpContext http, (string Name, string? Problem)[] checks)
    {
        bool verbose = http.Request.Query.ContainsKey("verbose");
        var text = new StringBuilder();
        bool ok = true;
        foreach (var (name, problem) in checks)
        {
            ok &= problem is null;
            if (verbose || problem is not null) text.Append(problem is null ? $"[+]{name} ok\n" : $"[-]{name} failed: {problem}\n");
        }
        text.Append(ok ? "ok\n" : "check failed\n");
        http.Response.StatusCode = ok ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
        http.Response.ContentType = TextPlain;
        return http.Response.WriteAsync(text.ToString());
    }

    private static string Metrics(ShardGauges shard, KvJournal.Member.Backups.BackupStatus backup, WriteThrottle? throttle, GrpcMetrics grpc)
    {
        var text = new StringBuilder();
        void Gauge(string name, string help, double value, string labels = "")
        {
            text.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}\n");
        }
        Gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", shard.HasLeader ? 1 : 0);
        Gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", shard.IsLeader ? 1 : 0);
        Gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.", shard.QuotaBytes);
        Gauge("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.", shard.DbSizeBytes);
        Gauge("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.", shard.DbSizeBytes);
        Gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", shard.Keys);
        Gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", shard.Revision);
        Gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.", shard.CompactRevision);
        Gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.", shard.WatchStreams);
        Gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", shard.Watchers);
        Gauge("kvjournal_shard_size_bytes", "The shard's size as its quota counts it (dbSize).", shard.DbSizeBytes, $"{{shard=\"{shard.Name}\"}}");
        Gauge("kvjournal_shard_quota_bytes", "The shard's quota in bytes.", shard.QuotaBytes, $"{{shard=\"{shard.Name}\"}}");
        Gauge("kvjournal_journal_applied_position", "Journal position of the last applied entry.", shard.AppliedPosition, $"{{shard=\"{shard.Name}\"}}");
        Gauge("kvjournal_journal_committed_position", "Journal position of the newest entry this member knows durable (applied lags it while catching up).", shard.CommittedPosition, $"{{shard=\"{shard.Name}\"}}");
        Gauge("kvjournal_alarms_active", "Alarms active on the shard (etcdctl alarm list).", shard.ActiveAlarms, $"{{shard=\"{shard.Name}\"}}");
        string shardLabel = $"{{shard=\"{shard.Name}\"}}";
        Gauge("kvjournal_backup_last_success_timestamp_seconds", "Unix time of the shard's last backup (0: none yet).", backup.LastSuccessUnixSeconds, shardLabel);
        Gauge("kvjournal_backup_last_duration_seconds", "How long the shard's last backup took.", backup.LastDurationSeconds, shardLabel);
        Gauge("kvjournal_backup_last_size_bytes", "Size of the shard's last backup file.", backup.LastSizeBytes, shardLabel);
        Gauge("kvjournal_backup_last_revision", "Revision the shard's last backup holds.", backup.LastRevision, shardLabel);
        text.Append(CultureInfo.InvariantCulture, $"# HELP kvjournal_backup_failures_total Backups of the shard that failed.\n# TYPE kvjournal_backup_failures_total counter\nkvjournal_backup_failures_total{shardLabel} {backup.Failures}\n");
        text.Append(CultureInfo.InvariantCulture, $"# HELP kvjournal_throttled_writes_total Client writes refused with \"too many requests\" by the shard's write rate or in-flight limit.\n# TYPE kvjournal_throttled_writes_total counter\n");
        text.Append(CultureInfo.InvariantCulture, $"kvjournal_throttled_writes_total{{shard=\"{shard.Name}\",limit=\"rate\"}} {throttle?.RefusedByRate ?? 0}\n");
        text.Append(CultureInfo.InvariantCulture, $"kvjournal_throttled_writes_total{{shard=\"{shard.Name}\",limit=\"inflight\"}} {throttle?.RefusedInFlight ?? 0}\n");
        Gauge("kvjournal_shard_write_rate_limit", "Client writes per second the shard admits (0: no limit).", throttle?.WritesPerSecond ?? 0, shardLabel);
        // The runtime's own costs, as etcd exports Go's (go_gc_duration_seconds, go_memstats_*).
        text.Append(CultureInfo.InvariantCulture, $"# HELP dotnet_gc_pause_seconds_total Total time the runtime paused threads for garbage collection.\n# TYPE dotnet_gc_pause_seconds_total counter\ndotnet_gc_pause_seconds_total {GC.GetTotalPauseDuration().TotalSeconds}\n");
        text.Append("# HELP dotnet_gc_collections_total Garbage collections of each generation.\n# TYPE dotnet_gc_collections_total counter\n");
        for (int gen = 0; gen <= GC.MaxGeneration; gen++)
            text.Append(CultureInfo.InvariantCulture, $"dotnet_gc_collections_total{{generation=\"{gen}\"}} {GC.CollectionCount(gen)}\n");
        text.Append(CultureInfo.InvariantCulture, $"# HELP dotnet_gc_allocated_bytes_total Bytes the process allocated on the managed heap.\n# TYPE dotnet_gc_allocated_bytes_total counter\ndotnet_gc_allocated_bytes_total {GC.GetTotalAllocatedBytes()}\n");
        Gauge("dotnet_gc_heap_size_bytes", "Bytes of managed heap in use after the last collection.", GC.GetGCMemoryInfo().HeapSizeBytes);
        shard.AppendLatency.WriteTo(text, "kvjournal_journal_append_duration_seconds", "Time from handing an entry to the journal to its being durable.");
        grpc.WriteTo(text);
        return text.ToString();
    }
}
