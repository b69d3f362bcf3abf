using KvJournal.Member.Metrics;

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
