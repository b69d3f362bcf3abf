using System.Diagnostics;
using System.Globalization;

namespace KvJournal.LoadHarness.Cluster;

/// <summary>
/// `cluster`: kube-apiserver's storage load for N nodes against the three setups in turn, N
/// growing through 5k, 10k, 25k, 50k, 75k and 100k nodes (within --nodes-from / --nodes-to) until a
/// setup no longer carries it: every call's p99 under 100 ms, no errors, no informer more than
/// 1 s behind. Then an events flood past the events store's quota at --flood-nodes, with node
/// lease renewals measured before and during it. Prints Markdown tables for bench/RESULTS.md.
/// </summary>
public static class ClusterBenchmark
{
    private static readonly int[] Ladder = [5_000, 10_000, 25_000, 50_000, 75_000, 100_000];
    private const long Quota = 8L << 30;

    private sealed record Measured(string Setup, StepResult Step, double CpuMicrosPerCall, double HarnessCpuShare, long ResidentMiB, long PeakResidentMiB, long LiveMiB)
    {
        public bool Carries => Step.Errors == 0 && Step.HarnessBehindShare < 0.01 && Step.LaggiestInformerMax < 1000 && Step.Calls.All(c => c.P99 < 100);
    }

    public static async Task RunAsync(HarnessArgs args)
    {
        var shape = ClusterShape.From(args);
        int from = args.Get("nodes-from", 5_000), to = args.Get("nodes-to", 100_000);
        var seconds = TimeSpan.FromSeconds(args.Get("seconds", 60));
        int setups = args.Get("setups", 7);
        bool keepGoing = args.Get("keep-going", 0) != 0;
        int[] ladder = [.. Ladder.Append(from).Append(to).Where(n => n >= from && n <= to).Distinct().Order()];
        string[] names = [.. new[] { ClusterSetup.KvJournal, ClusterSetup.Etcd, ClusterSetup.PartitionedEtcd }.Where((_, i) => (setups & (1 << i)) != 0)];
        Console.WriteLine($"cluster load: {string.Join(", ", ladder)} nodes, {seconds.TotalSeconds:0} s each, {ClusterShape.Apiservers} apiservers; " +
            $"lease renewal every {shape.LeaseRenewSeconds} s, node status every {shape.StatusSeconds} s, {shape.EventsPerNodeHour} events per node-hour, " +
            $"{shape.PodStartsPerSecondPer1000Nodes} pod starts/s per 1,000 nodes, {shape.PodsPerNode} standing pods per node, LIST every {shape.ListSeconds} s, compaction every {shape.CompactSeconds} s");

        var measured = new List<Measured>();
        foreach (var name in names)
        {
            await using var setup = await ClusterSetup.StartAsync(name, Quota);
            await using var load = new ClusterLoad(setup.Endpoints, shape);
            await load.StartAsync();
            foreach (int nodes in ladder)
            {
                var loading = Stopwatch.StartNew();
                await load.GrowAsync(nodes);
                Console.WriteLine($"{name}: {nodes} nodes loaded in {loading.Elapsed.TotalSeconds:F0} s");
                var m = await MeasureAsync(setup, load, () => load.RunAsync(seconds));
                measured.Add(m);
                Console.WriteLine($"{name}: {nodes} nodes {(m.Carries ? "carried" : "NOT carried")}: {Verdict(m)}");
                PrintCalls(m);
                if (!m.Carries && !keepGoing) break;
            }
        }

        Console.WriteLine();
        Console.WriteLine("| setup | nodes | calls/s | errors | worst p99 (ms) | informer lag p99 / max (ms) | full pod LIST (s) | server CPU µs/call | harness CPU | RSS / peak (MiB) | live data (MiB) | carried |");
        Console.WriteLine("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|");
        foreach (var m in measured)
        {
            var worst = m.Step.Calls.MaxBy(c => c.P99)!;
            Console.WriteLine(Invariant($"| {m.Setup} | {m.Step.Nodes} | {m.Step.Calls.Sum(c => c.Count) / m.Step.Seconds:F0} | {m.Step.Errors} | {worst.P99:F1} ({worst.Call}) | {m.Step.LaggiestInformerP99:F0} / {m.Step.LaggiestInformerMax:F0} | {m.Step.FullListSeconds:F2} | {m.CpuMicrosPerCall:F0} | {m.HarnessCpuShare:P0} | {m.ResidentMiB} / {m.PeakResidentMiB} | {m.LiveMiB} | {(m.Carries ? "yes" : "no")} |"));
        }
        Console.WriteLine();
        foreach (var name in names)
        {
            var carried = measured.Where(m => m.Setup == name && m.Carries).Select(m => m.Step.Nodes).DefaultIfEmpty(0).Max();
            Console.WriteLine($"largest N carried by {name}: {(carried == 0 ? $"none from {ladder[0]}" : carried.ToString("N0", CultureInfo.InvariantCulture))}");
        }

        int floodNodes = args.Get("flood-nodes", 5_000);
        if (floodNodes > 0) await FloodAsync(names, shape, floodNodes, args.Get("flood-quota-mib", 256) * (1L << 20), TimeSpan.FromSeconds(args.Get("flood-seconds", 30)));
    }

    /// <summary>The events flood: each setup fresh, its events store (one etcd: the whole store) given a small quota.</summary>
    private static async Task FloodAsync(string[] names, ClusterShape shape, int nodes, long eventsQuota, TimeSpan length)
    {
        Console.WriteLine();
        Console.WriteLine($"events flood: {nodes} nodes, events store quota {eventsQuota >> 20} MiB, {length.TotalSeconds:0} s without and with 8 clients creating 64 KiB events as fast as they are taken");
        var rows = new List<string>();
        foreach (var name in names)
        {
            await using var setup = await ClusterSetup.StartAsync(name, Quota, eventsQuota);
            await using var load = new ClusterLoad(setup.Endpoints, shape);
            await load.StartAsync();
            await load.GrowAsync(nodes);
            var before = await MeasureAsync(setup, load, () => load.RunAsync(length));
            var during = await MeasureAsync(setup, load, () => load.RunAsync(length, flood: true));
            PrintCalls(during);
            CallSummary Renewals(Measured m) => m.Step.Calls.FirstOrDefault(c => c.Call == "node lease renew") ?? new CallSummary("node lease renew", 0, 0, 0, 0, 0, 0, null);
            var (b, d) = (Renewals(before), Renewals(during));
            rows.Add(Invariant($"| {name} | {b.P99:F1} | {d.P99:F1} | {d.Errors} | {during.Step.Errors - d.Errors} | {during.Step.Flood.Accepted} / {during.Step.Flood.Refused} |"));
        }
        Console.WriteLine();
        Console.WriteLine("| setup | lease renew p99 before (ms) | during flood (ms) | lease renew errors during | other errors during | flood creates taken / refused |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        foreach (var row in rows) Console.WriteLine(row);
    }

    private static async Task<Measured> MeasureAsync(ClusterSetup setup, ClusterLoad load, Func<Task<StepResult>> run)
    {
        var serverCpu = setup.CpuTime;
        var harnessCpu = Process.GetCurrentProcess().TotalProcessorTime;
        var step = await run();
        double serverMicros = (setup.CpuTime - serverCpu).TotalMicroseconds;
        double harnessSeconds = (Process.GetCurrentProcess().TotalProcessorTime - harnessCpu).TotalSeconds;
        int calls = step.Calls.Sum(c => c.Count);
        var (resident, peak) = setup.Resident;
        return new Measured(setup.Name, step, calls == 0 ? 0 : serverMicros / calls, harnessSeconds / step.Seconds / Environment.ProcessorCount,
            resident >> 20, peak >> 20, load.LiveBytes >> 20);
    }

    private static string Verdict(Measured m)
    {
        var worst = m.Step.Calls.MaxBy(c => c.P99);
        return Invariant($"worst p99 {worst?.P99:F1} ms ({worst?.Call}), {m.Step.Errors} errors, informer lag max {m.Step.LaggiestInformerMax:F0} ms, harness behind {m.Step.HarnessBehindShare:P1}, server {m.CpuMicrosPerCall:F0} µs CPU/call, RSS {m.ResidentMiB} MiB for {m.LiveMiB} MiB live");
    }

    private static void PrintCalls(Measured m)
    {
        Console.WriteLine("| call (lag NAME@APISERVER: an informer's events after their write was acknowledged) | count | p50 (ms) | p99 | p99.9 | max | errors |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---|");
        foreach (var c in m.Step.Calls.Concat(m.Step.Informers))
            Console.WriteLine(Invariant($"| {c.Call} | {c.Count} | {c.P50:F2} | {c.P99:F2} | {c.P999:F2} | {c.Max:F1} | {c.Errors}{(c.FirstError is null ? "" : $" ({c.FirstError})")} |"));
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
