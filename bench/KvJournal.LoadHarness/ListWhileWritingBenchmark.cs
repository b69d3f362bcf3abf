using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Net.Client;
using KvJournal.Testing;

namespace KvJournal.LoadHarness;

/// <summary>
/// kube-apiserver's big paged list while writes continue, the reference etcd and kvjournal in turn
/// (both with fsync): 100,000 objects of 2 KiB are loaded, then a writer putting node-lease
/// renewals is measured alone and again while the objects are listed in pages of 10,000 at one
/// revision. The writer is a separate process (this harness, "list-writer"), as the apiserver's
/// clients are, so the lister's own garbage collection cannot pause it.
/// </summary>
public static class ListWhileWritingBenchmark
{
    private sealed record Window(double P50, double P99, double Max, int Puts);

    private sealed record Run(Window Idle, Window During, double ListSeconds, int Lists, long RssBeforeMiB, long PeakRssMiB);

    public static async Task RunAsync(HarnessArgs args)
    {
        int objects = args.Get("objects", 100_000);
        int lists = args.Get("lists", 3);
        Console.WriteLine($"list-while-writing: {objects} objects of 2 KiB listed {lists}× in pages of 10,000 while one writer in another process puts");
        Run etcd, kvj;
        await using (var server = await ReferenceEtcdProcess.StartAsync(fsync: true)) etcd = await MeasureAsync("etcd", server, objects, lists);
        await using (var server = await KvJournalProcess.StartAsync()) kvj = await MeasureAsync("kvjournal", server, objects, lists);

        Console.WriteLine();
        Console.WriteLine("| | etcd | kvjournal | kvjournal / etcd |");
        Console.WriteLine("|---|---:|---:|---:|");
        Row("write p50 alone (ms)", etcd.Idle.P50, kvj.Idle.P50);
        Row("write p99 alone (ms)", etcd.Idle.P99, kvj.Idle.P99);
        Row("write p50 during lists (ms)", etcd.During.P50, kvj.During.P50);
        Row("write p99 during lists (ms)", etcd.During.P99, kvj.During.P99);
        Row("write max during lists (ms)", etcd.During.Max, kvj.During.Max);
        Row("writes during lists", etcd.During.Puts, kvj.During.Puts);
        Row("one list (s)", etcd.ListSeconds, kvj.ListSeconds);
        Row("RSS after load (MiB)", etcd.RssBeforeMiB, kvj.RssBeforeMiB);
        Row("peak RSS (MiB)", etcd.PeakRssMiB, kvj.PeakRssMiB);
    }

    private static void Row(string name, double etcd, double kvj) =>
        Console.WriteLine($"| {name} | {etcd:0.#} | {kvj:0.#} | {kvj / etcd:F2} |");

    private static async Task<Run> MeasureAsync(string name, ServerProcess server, int objects, int lists)
    {
        var value = ByteString.CopyFrom(new byte[2048]);
        await Parallel.ForAsync(0, objects / 50, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (t, ct) =>
        {
            var txn = new TxnRequest();
            for (int i = t * 50; i < (t + 1) * 50; i++)
                txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8($"/registry/configmaps/big/{i:D6}"), Value = value } });
            await server.Kv.TxnAsync(txn, cancellationToken: ct);
        });
        long rssBefore = server.ResidentBytes().Current;

        await using var writer = await WriterProcess.StartAsync(server.Endpoint);
        await writer.StartWindowAsync();
        await Task.Delay(TimeSpan.FromSeconds(2));
        var idle = await writer.EndWindowAsync();

        await writer.StartWindowAsync();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < lists; i++) await ListAsync(server.Kv, objects);
        double listSeconds = clock.Elapsed.TotalSeconds / lists;
        var during = await writer.EndWindowAsync();
        long peak = server.ResidentBytes().Peak;
        Console.WriteLine($"{name}: write p99 {idle.P99:F1} ms alone, {during.P99:F1} ms during lists of {listSeconds:F2} s");
        return new Run(idle, during, listSeconds, lists, rssBefore / 1048576, peak / 1048576);
    }

    private static async Task ListAsync(KV.KVClient kv, int expected)
    {
        int listed = await PagedList.CountAsync(kv, ByteString.CopyFromUtf8("/registry/configmaps/"), ByteString.CopyFromUtf8("/registry/configmaps0"), 10_000);
        if (listed != expected) throw new InvalidOperationException($"listed {listed} objects, expected {expected}");
    }

    /// <summary>
    /// The writer child: puts one key at a time and, between "start" and "stop" lines on stdin,
    /// records latencies; "stop" answers one line "p50 p99 max count".
    /// </summary>
    public static async Task<int> RunWriterAsync(string endpoint)
    {
        using var channel = GrpcChannel.ForAddress($"http://{endpoint}");
        var kv = new KV.KVClient(channel);
        var value = ByteString.CopyFromUtf8("renew");
        var latencies = new List<double>();
        bool recording = false;
        var commands = Task.Run(() => Console.In.ReadLine());
        for (int i = 0; ; i++)
        {
            var t = Stopwatch.StartNew();
            await kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8($"/registry/leases/kube-node-lease/node-{i % 50}"), Value = value });
            if (recording) latencies.Add(t.Elapsed.TotalMilliseconds);
            if (i < 200 || !commands.IsCompleted) continue; // 200 warm-up puts before any command is taken
            switch (await commands)
            {
                case "start":
                    latencies.Clear();
                    recording = true;
                    Console.WriteLine("started");
                    break;
                case "stop":
                    latencies.Sort();
                    recording = false;
                    Console.WriteLine(latencies.Count == 0 ? "0 0 0 0" :
                        FormattableString.Invariant($"{latencies[latencies.Count / 2]} {latencies[latencies.Count * 99 / 100]} {latencies[^1]} {latencies.Count}"));
                    break;
                default:
                    return 0; // stdin closed
            }
            commands = Task.Run(() => Console.In.ReadLine());
        }
    }

    private sealed class WriterProcess : IAsyncDisposable
    {
        private readonly Process _process;

        private WriterProcess(Process process) => _process = process;

        public static Task<WriterProcess> StartAsync(string endpoint)
        {
            var info = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[] { typeof(ListWhileWritingBenchmark).Assembly.Location, "list-writer", endpoint }) info.ArgumentList.Add(a);
            return Task.FromResult(new WriterProcess(Process.Start(info)!));
        }

        public async Task StartWindowAsync()
        {
            await _process.StandardInput.WriteLineAsync("start");
            await _process.StandardInput.FlushAsync();
            if (await _process.StandardOutput.ReadLineAsync() != "started") throw new InvalidOperationException("the writer did not start its window");
        }

        public async Task<Window> EndWindowAsync()
        {
            await _process.StandardInput.WriteLineAsync("stop");
            await _process.StandardInput.FlushAsync();
            var parts = (await _process.StandardOutput.ReadLineAsync() ?? throw new InvalidOperationException("the writer exited")).Split(' ');
            double P(int i) => double.Parse(parts[i], System.Globalization.CultureInfo.InvariantCulture);
            return new Window(P(0), P(1), P(2), (int)P(3));
        }

        public async ValueTask DisposeAsync()
        {
            _process.StandardInput.Close();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try { await _process.WaitForExitAsync(timeout.Token); }
            catch (OperationCanceledException) { _process.Kill(); }
            _process.Dispose();
        }
    }
}
