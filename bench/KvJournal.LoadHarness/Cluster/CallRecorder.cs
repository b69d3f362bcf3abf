using System.Diagnostics;
using Grpc.Core;

namespace KvJournal.LoadHarness.Cluster;

/// <summary>Latency and errors of one call type over a measured window.</summary>
public sealed record CallSummary(string Call, int Count, double P50, double P99, double P999, double Max, int Errors, string? FirstError);

/// <summary>
/// Latencies (ms) and errors per call type for one measured window. Calls from every task record
/// here; a new window starts with a new recorder.
/// </summary>
public sealed class CallRecorder
{
    private readonly Dictionary<string, List<double>> _latencies = [];
    private readonly Dictionary<string, (int Count, string First)> _errors = [];

    public static double MillisecondsSince(long timestamp) => Stopwatch.GetElapsedTime(timestamp).TotalMilliseconds;

    public void Record(string call, long startTimestamp) => Record(call, MillisecondsSince(startTimestamp));

    public void Record(string call, double milliseconds)
    {
        lock (_latencies)
        {
            if (!_latencies.TryGetValue(call, out var list)) _latencies[call] = list = new List<double>(1 << 16);
            list.Add(milliseconds);
        }
    }

    public void Error(string call, Exception error)
    {
        string text = error is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : $"{error.GetType().Name}: {error.Message}";
        lock (_errors) _errors[call] = _errors.TryGetValue(call, out var e) ? (e.Count + 1, e.First) : (1, text);
    }

    public int TotalErrors
    {
        get
        {
            lock (_errors) return _errors.Values.Sum(e => e.Count);
        }
    }

    public IReadOnlyList<CallSummary> Summaries()
    {
        lock (_latencies)
            lock (_errors)
            {
                var names = _latencies.Keys.Union(_errors.Keys).Order(StringComparer.Ordinal);
                return [.. names.Select(Summarise)];
            }
    }

    private CallSummary Summarise(string call)
    {
        var sorted = _latencies.TryGetValue(call, out var l) ? l.Order().ToArray() : [];
        var (errors, first) = _errors.TryGetValue(call, out var e) ? e : (0, null);
        return new CallSummary(call, sorted.Length, Percentile(sorted, 0.5), Percentile(sorted, 0.99), Percentile(sorted, 0.999),
            sorted.Length == 0 ? 0 : sorted[^1], errors, first);
    }

    private static double Percentile(double[] sorted, double p) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * p))];
}

/// <summary>
/// When the write that made each revision of one store was acknowledged, so an informer can tell
/// how far behind the newest write its events arrive. A ring of revisions: a slot holding another
/// revision (not yet acknowledged, or not written by this load) reads as "no lag known".
/// </summary>
public sealed class AckTimes
{
    private const int Size = 1 << 20;
    private readonly long[] _revisions = new long[Size];
    private readonly long[] _timestamps = new long[Size];

    public void Acknowledged(long revision)
    {
        int slot = (int)(revision & (Size - 1));
        Volatile.Write(ref _timestamps[slot], Stopwatch.GetTimestamp());
        Volatile.Write(ref _revisions[slot], revision);
    }

    public bool TryGet(long revision, out long timestamp)
    {
        // The revision is written after its time, so once it matches the time read after it is its own.
        int slot = (int)(revision & (Size - 1));
        bool known = Volatile.Read(ref _revisions[slot]) == revision;
        timestamp = known ? Volatile.Read(ref _timestamps[slot]) : 0;
        return known;
    }
}
