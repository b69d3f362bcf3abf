using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.JournalService;
using KvJournal.Testing;

namespace KvJournal.LoadHarness;

/// <summary>
/// The journal service alone (Append of 256-byte entries, one per call and 64 per call), then
/// end-to-end durable puts through an embedded member, one member on the journal service and
/// three members on it (clients spread over them), each next to the reference etcd with fsync on,
/// at 1 client and at --clients clients. Loopback only; every window is --seconds long.
/// </summary>
public static class JournalBenchmark
{
    public static async Task RunAsync(HarnessArgs args)
    {
        int seconds = args.Get("seconds", 3);
        int clients = args.Get("clients", 64);
        var window = TimeSpan.FromSeconds(seconds);
        var value = ByteString.CopyFrom(new byte[256]);
        Console.WriteLine($"journal benchmark: {seconds} s windows, 256-byte entries and values, 1 and {clients} clients");
        Console.WriteLine();

        await using (var journal = await JournalProcess.StartAsync())
        {
            var client = journal.Journal;
            Task Append(int entries) => client.AppendAsync(Batch(entries, value)).ResponseAsync;
            await PutLoad.RunAsync(8, TimeSpan.FromSeconds(1), (_, _) => Append(1)); // warm-up
            Console.WriteLine("| journal service alone | appends/s | entries/s | p50 ms | p99 ms |");
            Console.WriteLine("|---|---:|---:|---:|---:|");
            foreach (var (writers, perCall) in new[] { (1, 1), (clients, 1), (clients, 64) })
            {
                var s = await PutLoad.RunAsync(writers, window, (_, _) => Append(perCall));
                Console.WriteLine($"| {writers} clients × {perCall} entr{(perCall == 1 ? "y" : "ies")} per Append | {s.PerSecond:F0} | {s.PerSecond * perCall:F0} | {s.P50:F2} | {s.P99:F2} |");
            }
        }
        Console.WriteLine();

        var etcd = new Dictionary<int, LatencySummary>();
        await using (var reference = await ReferenceEtcdProcess.StartAsync(fsync: true))
        {
            foreach (int n in new[] { 1, clients }) etcd[n] = await PutsAsync([reference], n, window, value);
        }
        Console.WriteLine("| durable put | clients | etcd puts/s | KvJournal puts/s | ratio | etcd p99 ms | KvJournal p99 ms |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        await using (var embedded = await KvJournalProcess.StartAsync())
        {
            foreach (int n in new[] { 1, clients }) Row("embedded journal, 1 member", n, etcd[n], await PutsAsync([embedded], n, window, value));
        }
        await using (var journal = await JournalProcess.StartAsync())
        {
            var members = new List<KvJournalProcess>();
            try
            {
                // One member alone first: idle members still tail and apply every entry on the same cores.
                members.Add(await KvJournalProcess.StartAsync(null, "--name", "m0", "--journal-endpoints", journal.Url));
                foreach (int n in new[] { 1, clients }) Row("journal service, 1 member", n, etcd[n], await PutsAsync(members, n, window, value));
                for (int i = 1; i < 3; i++) members.Add(await KvJournalProcess.StartAsync(null, "--name", $"m{i}", "--journal-endpoints", journal.Url));
                foreach (int n in new[] { 1, clients }) Row("journal service, 3 members", n, etcd[n], await PutsAsync(members, n, window, value));
            }
            finally
            {
                foreach (var m in members) await m.DisposeAsync();
            }
        }
    }

    private static AppendRequest Batch(int entries, ByteString value)
    {
        var request = new AppendRequest { Stream = "bench" };
        for (int i = 0; i < entries; i++) request.Entries.Add(value);
        return request;
    }

    // Client w writes through server w mod count, after a two-second warm-up at 16 clients (so the
    // JIT has compiled the member's and journal's paths before anything is measured).
    private static async Task<LatencySummary> PutsAsync(IReadOnlyList<ServerProcess> servers, int clients, TimeSpan window, ByteString value)
    {
        Task Put(int w, int i) => servers[w % servers.Count].Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8($"bench/{w}/{i % 1000}"), Value = value }).ResponseAsync;
        await PutLoad.RunAsync(Math.Max(clients, 16), TimeSpan.FromSeconds(2), Put);
        return await PutLoad.RunAsync(clients, window, Put);
    }

    private static void Row(string setup, int clients, LatencySummary etcd, LatencySummary kvj) =>
        Console.WriteLine($"| {setup} | {clients} | {etcd.PerSecond:F0} | {kvj.PerSecond:F0} | {kvj.PerSecond / etcd.PerSecond:F2} | {etcd.P99:F2} | {kvj.P99:F2} |");
}
