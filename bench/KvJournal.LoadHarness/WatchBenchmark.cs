using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using KvJournal.Testing;

namespace KvJournal.LoadHarness;

/// <summary>
/// Watch at scale, the reference etcd and kvjournal in turn on the same machine, both with fsync
/// on: resident memory per idle watcher, and the rate at which one stream of writes is delivered
/// to many watchers of the same prefix (events delivered per second, writes to last delivery).
/// </summary>
public static class WatchBenchmark
{
    private sealed record Result(double BytesPerWatcher, double EventsPerSecond, double Seconds);

    public static async Task RunAsync(HarnessArgs args)
    {
        int watchers = args.Get("watchers", 50_000);
        int fanout = args.Get("fanout", 1_000);
        int events = args.Get("events", 2_000);
        Console.WriteLine($"watch benchmark: {watchers} idle watchers for memory; {fanout} watchers x {events} writes for delivery");

        Result etcd, kvj;
        await using (var server = await ReferenceEtcdProcess.StartAsync(fsync: true))
            etcd = await MeasureAsync(server, watchers, fanout, events);
        await using (var server = await KvJournalProcess.StartAsync())
            kvj = await MeasureAsync(server, watchers, fanout, events);

        Console.WriteLine();
        Console.WriteLine("| metric | etcd | kvjournal | kvjournal / etcd |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine($"| resident bytes per idle watcher | {etcd.BytesPerWatcher:F0} | {kvj.BytesPerWatcher:F0} | {kvj.BytesPerWatcher / etcd.BytesPerWatcher:F2} |");
        Console.WriteLine($"| events delivered per second ({fanout} watchers) | {etcd.EventsPerSecond:F0} | {kvj.EventsPerSecond:F0} | {kvj.EventsPerSecond / etcd.EventsPerSecond:F2} |");
        Console.WriteLine($"| seconds from first write to last delivery | {etcd.Seconds:F2} | {kvj.Seconds:F2} | {kvj.Seconds / etcd.Seconds:F2} |");
    }

    private static async Task<Result> MeasureAsync(ServerProcess server, int watchers, int fanout, int events)
    {
        string name = server is KvJournalProcess ? "kvjournal" : "etcd";
        using var channel = GrpcChannel.ForAddress($"http://{server.Endpoint}", new GrpcChannelOptions { MaxReceiveMessageSize = null });
        await WarmUpAsync(server, channel);

        // Memory: many idle watchers, 100 per stream, each on its own key.
        long before = server.ResidentBytes().Current;
        var idle = new List<Counter>();
        for (int s = 0; s < watchers / 100; s++)
        {
            var c = new Counter(channel, expectEvents: 0);
            for (int k = 0; k < 100; k++) await c.CreateAsync($"/idle/{s}/{k}", prefix: false);
            idle.Add(c);
        }
        foreach (var c in idle) await c.CreatedAsync(100);
        long after = server.ResidentBytes().Current;
        foreach (var c in idle) await c.DisposeAsync();
        double perWatcher = (after - before) / (double)Math.Max(1, watchers);
        Console.WriteLine($"{name}: RSS {before / 1048576.0:F1} MiB -> {after / 1048576.0:F1} MiB with {watchers} watchers");

        // Delivery: fanout watchers on one prefix over 10 streams, then `events` puts by 8 writers.
        int streams = Math.Max(1, fanout / 100);
        var counters = new List<Counter>();
        for (int s = 0; s < streams; s++)
        {
            var c = new Counter(channel, expectEvents: (long)events * (fanout / streams));
            for (int k = 0; k < fanout / streams; k++) await c.CreateAsync("/fan/", prefix: true);
            counters.Add(c);
        }
        foreach (var c in counters) await c.CreatedAsync(fanout / streams);
        var value = ByteString.CopyFrom(new byte[128]);
        int next = 0;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) <= events)
                await server.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8($"/fan/{i}"), Value = value });
        })));
        double writeSeconds = clock.Elapsed.TotalSeconds;
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await Task.WhenAll(counters.Select(c => c.AllDelivered.WaitAsync(limit.Token)));
        double seconds = clock.Elapsed.TotalSeconds;
        foreach (var c in counters) await c.DisposeAsync();
        double rate = (double)events * fanout / seconds;
        Console.WriteLine($"{name}: {events} writes x {fanout} watchers delivered in {seconds:F2} s ({rate:F0} events/s); writes took {writeSeconds:F2} s");
        return new Result(perWatcher, rate, seconds);
    }

    // Both servers serve the same work once before measuring (kvjournal's JIT compiles its hot paths then).
    private static async Task WarmUpAsync(ServerProcess server, GrpcChannel channel)
    {
        var counter = new Counter(channel, expectEvents: 3000L * 10);
        for (int k = 0; k < 10; k++) await counter.CreateAsync("/warm/", prefix: true);
        await counter.CreatedAsync(10);
        int next = 0;
        var value = ByteString.CopyFrom(new byte[128]);
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) <= 3000)
                await server.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8($"/warm/{i}"), Value = value });
        })));
        await counter.AllDelivered.WaitAsync(TimeSpan.FromMinutes(1));
        await counter.DisposeAsync();
    }

    /// <summary>One watch stream that only counts what it receives.</summary>
    private sealed class Counter : IAsyncDisposable
    {
        private readonly AsyncDuplexStreamingCall<WatchRequest, WatchResponse> _call;
        private readonly CancellationTokenSource _stop = new();
        private readonly TaskCompletionSource _delivered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Task _reading;
        private readonly long _expectEvents;
        private int _created;
        private long _events;

        public Counter(GrpcChannel channel, long expectEvents)
        {
            _expectEvents = expectEvents;
            _call = new Watch.WatchClient(channel).Watch(cancellationToken: _stop.Token);
            _reading = Task.Run(ReadAsync);
        }

        public Task AllDelivered => _delivered.Task;

        public Task CreateAsync(string key, bool prefix) => _call.RequestStream.WriteAsync(new WatchRequest
        {
            CreateRequest = new WatchCreateRequest
            {
                Key = ByteString.CopyFromUtf8(key),
                RangeEnd = prefix ? ByteString.CopyFromUtf8(WatchSession.PrefixEnd(key)) : ByteString.Empty,
            },
        });

        /// <summary>Completes once <paramref name="count"/> created responses arrived (the watchers exist).</summary>
        public Task CreatedAsync(int count)
        {
            _createdTarget = count;
            if (Volatile.Read(ref _created) >= count) _allCreated.TrySetResult();
            return _allCreated.Task.WaitAsync(TimeSpan.FromMinutes(2));
        }

        private readonly TaskCompletionSource _allCreated = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private volatile int _createdTarget = int.MaxValue;

        private async Task ReadAsync()
        {
            try
            {
                while (await _call.ResponseStream.MoveNext(_stop.Token))
                {
                    var r = _call.ResponseStream.Current;
                    if (r.Created && Interlocked.Increment(ref _created) >= _createdTarget) _allCreated.TrySetResult();
                    if (r.Events.Count > 0 && (_events += r.Events.Count) >= _expectEvents && _expectEvents > 0) _delivered.TrySetResult();
                }
            }
            catch (RpcException) when (_stop.IsCancellationRequested) { }
            catch (OperationCanceledException) { }
            _allCreated.TrySetException(new InvalidOperationException("watch stream ended"));
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            try { await _reading; } catch (Exception) { /* stopped */ }
            _call.Dispose();
            _stop.Dispose();
        }
    }
}
