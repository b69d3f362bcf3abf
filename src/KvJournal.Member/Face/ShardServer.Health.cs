using Grpc.Health.V1;
using KvJournal.Member.Metrics;
using KvJournal.Storage.Apply;
using static Grpc.Health.V1.HealthCheckResponse.Types;

namespace KvJournal.Member.Face;

/// <summary>A shard's figures for /metrics, read at one point.</summary>
public readonly record struct ShardGauges(string Name, bool HasLeader, bool IsLeader, long QuotaBytes, long DbSizeBytes, int Keys,
    long Revision, long CompactRevision, int WatchStreams, int Watchers, long AppliedPosition, long CommittedPosition, int ActiveAlarms, LatencyHistogram AppendLatency);

// What etcd's health endpoints and metrics report about the shard.
public sealed partial class ShardServer
{
    // etcd's health check runs a quorum read; this is how long it may take.
    private static readonly TimeSpan ReadCheckTimeout = TimeSpan.FromSeconds(1);

    /// <summary>"apply stopped" once the member failed-stop, else null (/livez: the process should be restarted).</summary>
    public string? ApplyProblem => shard.Failure is null ? null : "apply stopped";

    /// <summary>Completes once the shard stopped applying (then <see cref="ApplyProblem"/> says whether it failed).</summary>
    public Task ApplyStopped => shard.ApplyStopped;

    /// <summary>
    /// gRPC's health check (grpc.health.v1.Health/Check). etcd registers only the member as a whole,
    /// the service "", and says SERVING while it serves; here it is NOT_SERVING once the member
    /// failed-stop, as /livez says (it should be restarted). Any other service is unknown (NotFound).
    /// </summary>
    public HealthCheckResponse CheckHealth(HealthCheckRequest request) =>
        request.Service.Length == 0 ? new HealthCheckResponse { Status = HealthStatus } : throw new EtcdException(EtcdError.UnknownHealthService);

    /// <summary>
    /// gRPC's health watch (grpc.health.v1.Health/Watch): the status now, then each change, until
    /// the caller leaves. An unknown service is SERVICE_UNKNOWN and stays so, as in grpc-go.
    /// </summary>
    public async Task WatchHealthAsync(HealthCheckRequest request, Func<HealthCheckResponse, CancellationToken, Task> send, CancellationToken cancellationToken)
    {
        if (request.Service.Length != 0)
        {
            await send(new HealthCheckResponse { Status = ServingStatus.ServiceUnknown }, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            var sent = HealthStatus;
            await send(new HealthCheckResponse { Status = sent }, cancellationToken).ConfigureAwait(false);
            if (sent == ServingStatus.Serving)
            {
                await ApplyStopped.WaitAsync(cancellationToken).ConfigureAwait(false);
                // A shard closed at shutdown ends the call with the server; only a fail-stop is news.
                if (HealthStatus != sent) await send(new HealthCheckResponse { Status = HealthStatus }, cancellationToken).ConfigureAwait(false);
            }
        }
        await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
    }

    private ServingStatus HealthStatus => ApplyProblem is null ? ServingStatus.Serving : ServingStatus.NotServing;

    /// <summary>The first active alarm not excluded, as etcd's /health words it ("ALARM NOSPACE"), or null.</summary>
    public string? AlarmProblem(Func<string, bool> excluded) => shard.Read(_ =>
    {
        foreach (var alarm in shard.Alarms)
        {
            string name = alarm.Alarm.ToString().ToUpperInvariant();
            if (!excluded(name)) return $"ALARM {name}";
        }
        return null;
    });

    /// <summary>Why the member cannot serve a linearizable read or take writes now, or null.</summary>
    public async Task<string?> ServingProblemAsync(CancellationToken cancellationToken)
    {
        if (ApplyProblem is { } stopped) return stopped;
        if (!shard.JournalReachable) return "journal unavailable";
        try
        {
            await shard.WaitLinearizableAsync(cancellationToken).WaitAsync(ReadCheckTimeout, cancellationToken).ConfigureAwait(false);
            return null;
        }
        catch (TimeoutException)
        {
            return "timeout";
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            return "journal unavailable";
        }
    }

    public ShardGauges Gauges()
    {
        var (revision, compacted, dbSize, keys, alarms) = shard.Read(txn => (txn.ReadRevision, txn.CompactRevision, shard.DbSize, shard.Store.KeyCount, shard.Alarms.Count));
        var (streams, watchers) = shard.Watches.Counts();
        return new ShardGauges(shard.Name, shard.JournalReachable, shard.LeaderId == shard.MemberId, shard.QuotaBytes, dbSize, keys,
            revision, Math.Max(0, compacted), streams, watchers, shard.AppliedPosition, shard.CommittedPosition, alarms, shard.AppendLatency);
    }
}
