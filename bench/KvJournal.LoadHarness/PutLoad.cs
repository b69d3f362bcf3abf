using System.Diagnostics;

namespace KvJournal.LoadHarness;

/// <summary>Latency figures of one measured window.</summary>
public sealed record LatencySummary(double P50, double P99, double Max, int Count, double PerSecond, int Over100Ms = 0);

/// <summary>Runs <c>writers</c> loops of one request each for a fixed time and summarises their latencies.</summary>
public static class PutLoad
{
    public static async Task<LatencySummary> RunAsync(int writers, TimeSpan length, Func<int, int, Task> request)
    {
        var latencies = new List<double>();
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            var mine = new List<double>();
            for (int i = 0; clock.Elapsed < length; i++)
            {
                var t = Stopwatch.StartNew();
                await request(w, i);
                mine.Add(t.Elapsed.TotalMilliseconds);
            }
            lock (latencies) latencies.AddRange(mine);
        })));
        latencies.Sort();
        int slow = 0;
        foreach (double l in latencies) if (l > 100) slow++;
        return new LatencySummary(latencies[latencies.Count / 2], latencies[latencies.Count * 99 / 100], latencies[^1], latencies.Count, latencies.Count / clock.Elapsed.TotalSeconds, slow);
    }
}
