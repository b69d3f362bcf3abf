using System.Globalization;
using System.Text;

namespace KvJournal.Member.Metrics;

/// <summary>
/// A Prometheus histogram of durations with etcd's bucket layout for disk latencies (1 ms doubling
/// to about 8 s, as etcd_disk_wal_fsync_duration_seconds). Lock-free to observe.
/// </summary>
public sealed class LatencyHistogram
{
    private static readonly double[] Bounds = [.. Enumerable.Range(0, 14).Select(i => 0.001 * Math.Pow(2, i))];
    private readonly long[] _counts = new long[Bounds.Length + 1];
    private long _sumMicros;

    public void Observe(TimeSpan duration)
    {
        double seconds = duration.TotalSeconds;
        int i = 0;
        while (i < Bounds.Length && seconds > Bounds[i]) i++;
        Interlocked.Increment(ref _counts[i]);
        Interlocked.Add(ref _sumMicros, (long)(seconds * 1_000_000));
    }

    /// <summary>Appends the histogram in the Prometheus text format.</summary>
    public void WriteTo(StringBuilder text, string name, string help)
    {
        text.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} histogram\n");
        long cumulative = 0;
        for (int i = 0; i < Bounds.Length; i++)
        {
            cumulative += Interlocked.Read(ref _counts[i]);
            text.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{le=\"{Bounds[i]}\"}} {cumulative}\n");
        }
        cumulative += Interlocked.Read(ref _counts[^1]);
        text.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{le=\"+Inf\"}} {cumulative}\n");
        text.Append(CultureInfo.InvariantCulture, $"{name}_sum {Interlocked.Read(ref _sumMicros) / 1_000_000.0}\n");
        text.Append(CultureInfo.InvariantCulture, $"{name}_count {cumulative}\n");
    }
}
