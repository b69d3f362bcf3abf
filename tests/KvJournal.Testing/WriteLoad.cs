using System.Collections.Concurrent;
using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;

namespace KvJournal.Testing;

/// <summary>
/// Writers putting distinct keys (<c>PREFIX/writer/index</c>) through a set of servers (writer w
/// through server w mod count) until disposed or bounded by their count; records every
/// acknowledgement with its revision and time, for fault tests ("nothing acknowledged is lost")
/// and failover measurements ("how long was no write acknowledged"). With
/// <paramref name="failOver"/> a writer whose write failed moves to the next server, as a client
/// given every endpoint does; without it each writer stays on its server.
/// </summary>
public sealed class WriteLoad(IReadOnlyList<ServerProcess> servers, string prefix, bool failOver = false) : IAsyncDisposable
{
    /// <summary>Every acknowledged key and the revision it was acknowledged at.</summary>
    public ConcurrentDictionary<string, long> Acked { get; } = new();

    /// <summary>When each acknowledgement came (time since the load began) and through which server.</summary>
    public ConcurrentQueue<(int Server, TimeSpan At)> AckTimes { get; } = new();

    /// <summary>Time since the load began.</summary>
    public TimeSpan Now => _clock.Elapsed;

    private readonly CancellationTokenSource _stop = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _lastAckTicks;
    private long _longestGapTicks;
    private Task[] _writers = [];
    private int _acks;

    public int Acks => Volatile.Read(ref _acks);

    /// <summary>The longest time without any acknowledged write so far.</summary>
    public TimeSpan LongestGap => TimeSpan.FromTicks(Interlocked.Read(ref _longestGapTicks));

    /// <summary>The longest time without an acknowledged write from <paramref name="at"/> (e.g. a kill) to the last acknowledgement.</summary>
    public TimeSpan LongestGapAfter(TimeSpan at)
    {
        var times = AckTimes.Select(a => a.At).Where(t => t > at).Order().ToList();
        var longest = TimeSpan.Zero;
        var previous = at;
        foreach (var t in times)
        {
            if (t - previous > longest) longest = t - previous;
            previous = t;
        }
        return longest;
    }

    public void Start(int writers) => _writers = [.. Enumerable.Range(0, writers).Select(w => Task.Run(() => WriteAsync(w)))];

    private async Task WriteAsync(int w)
    {
        int server = w % servers.Count;
        for (int i = 0; i < 100_000 && !_stop.IsCancellationRequested; i++)
        {
            string key = $"{prefix}{w}/{i:D6}";
            try
            {
                var r = await servers[server].Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFromUtf8(key) },
                    deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: _stop.Token);
                Acked[key] = r.Header.Revision;
                AckTimes.Enqueue((server, _clock.Elapsed));
                Interlocked.Increment(ref _acks);
                long now = _clock.Elapsed.Ticks, last = Interlocked.Exchange(ref _lastAckTicks, now);
                long gap = now - last, longest;
                while (gap > (longest = Interlocked.Read(ref _longestGapTicks)) && Interlocked.CompareExchange(ref _longestGapTicks, gap, longest) != longest) { }
            }
            catch (RpcException) when (!_stop.IsCancellationRequested)
            {
                // not acknowledged: may or may not be stored; the next key goes on
                if (failOver) server = (server + 1) % servers.Count;
            }
            catch (RpcException)
            {
            }
        }
    }

    /// <summary>Completes once <paramref name="more"/> further writes were acknowledged.</summary>
    public async Task WaitForAcksAsync(int more, TimeSpan timeout)
    {
        int target = Acks + more;
        var deadline = DateTime.UtcNow + timeout;
        while (Acks < target)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{Acks} of {target} writes acknowledged after {timeout}");
            await Task.Delay(20);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_writers);
        _stop.Dispose();
    }
}
