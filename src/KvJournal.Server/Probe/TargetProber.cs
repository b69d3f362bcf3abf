using System.Globalization;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Member.Mirror;

namespace KvJournal.Server.Probe;

/// <summary>A client URL to probe (a member's, or a shard's), and the name results are filed under.</summary>
public sealed record ProbeTarget(string Name, Uri Endpoint);

/// <summary>
/// Probes one target every interval: puts a canary key, reads it back linearizably (the value and
/// revision must be the put's), and waits for a watch on the key to deliver that revision; each
/// step within the latency bound, all three or the probe fails. A broken watch is made again on
/// the next probe. The client is an ordinary etcd client (EtcdSource: token, TLS).
/// </summary>
public sealed class TargetProber(ProbeTarget target, EtcdSourceOptions client, TimeSpan bound, TimeProvider time) : IDisposable
{
    private readonly EtcdSource _etcd = new(client);
    private readonly ByteString _key = ByteString.CopyFromUtf8($"kvjournal-probe/{Environment.MachineName}/{target.Name}");
    private AsyncDuplexStreamingCall<WatchRequest, WatchResponse>? _watch;
    private Task _reading = Task.CompletedTask;
    private readonly Lock _lock = new();
    private long _delivered;
    private (long Revision, TaskCompletionSource Seen)? _waiter;
    private long _sequence;

    public ProbeTarget Target => target;

    public async Task<ProbeResult> ProbeAsync(CancellationToken stopping)
    {
        var at = time.GetUtcNow();
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        bounded.CancelAfter(bound);
        double putMs = 0, getMs = 0, watchMs = 0;
        try
        {
            var headers = await _etcd.HeadersAsync(bounded.Token).ConfigureAwait(false);
            await EnsureWatchAsync(headers, bounded.Token).ConfigureAwait(false);
            string value = $"{at.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture)}-{++_sequence}";
            long start = time.GetTimestamp();
            var put = await _etcd.Kv.PutAsync(new PutRequest { Key = _key, Value = ByteString.CopyFromUtf8(value) }, headers, cancellationToken: bounded.Token).ConfigureAwait(false);
            putMs = time.GetElapsedTime(start).TotalMilliseconds;
            long revision = put.Header.Revision;

            start = time.GetTimestamp();
            var got = await _etcd.Kv.RangeAsync(new RangeRequest { Key = _key }, headers, cancellationToken: bounded.Token).ConfigureAwait(false);
            getMs = time.GetElapsedTime(start).TotalMilliseconds;
            if (got.Kvs.Count != 1 || got.Kvs[0].Value.ToStringUtf8() != value || got.Kvs[0].ModRevision != revision)
                return Failed(at, putMs, getMs, watchMs, $"read back {(got.Kvs.Count == 0 ? "nothing" : $"revision {got.Kvs[0].ModRevision}")}, wrote revision {revision}");

            start = time.GetTimestamp();
            await DeliveredAsync(revision, bounded.Token).ConfigureAwait(false);
            watchMs = time.GetElapsedTime(start).TotalMilliseconds;
            return new ProbeResult(at, target.Name, true, putMs, getMs, watchMs, null);
        }
        catch (Exception) when (stopping.IsCancellationRequested)
        {
            // The probe is stopping: this probe was cut short, not failed.
            throw new OperationCanceledException(stopping);
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException or IOException or HttpRequestException or InvalidOperationException)
        {
            if (ex is RpcException rpc && EtcdSource.IsExpiredToken(rpc)) _etcd.ForgetToken();
            DropWatch();
            string error = ex is OperationCanceledException ? $"no answer within {bound.TotalMilliseconds:0} ms" : ex is RpcException r ? $"{r.StatusCode}: {r.Status.Detail}" : ex.Message;
            return Failed(at, putMs, getMs, watchMs, error);
        }
    }

    private ProbeResult Failed(DateTimeOffset at, double putMs, double getMs, double watchMs, string error) => new(at, target.Name, false, putMs, getMs, watchMs, error);

    private async Task EnsureWatchAsync(Metadata headers, CancellationToken cancellationToken)
    {
        if (_watch is not null && !_reading.IsCompleted) return;
        DropWatch();
        var watch = _etcd.Watch.Watch(headers, cancellationToken: CancellationToken.None); // lives across probes
        await watch.RequestStream.WriteAsync(new WatchRequest { CreateRequest = new WatchCreateRequest { Key = _key } }, cancellationToken).ConfigureAwait(false);
        if (!await watch.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false) || !watch.ResponseStream.Current.Created)
        {
            watch.Dispose();
            throw new InvalidOperationException("the watch was not created");
        }
        lock (_lock) _delivered = watch.ResponseStream.Current.Header.Revision;
        _watch = watch;
        _reading = ReadWatchAsync(watch);
    }

    private async Task ReadWatchAsync(AsyncDuplexStreamingCall<WatchRequest, WatchResponse> watch)
    {
        try
        {
            while (await watch.ResponseStream.MoveNext(CancellationToken.None).ConfigureAwait(false))
            {
                foreach (var e in watch.ResponseStream.Current.Events)
                {
                    lock (_lock)
                    {
                        _delivered = Math.Max(_delivered, e.Kv.ModRevision);
                        if (_waiter is { } w && _delivered >= w.Revision) w.Seen.TrySetResult();
                    }
                }
            }
        }
        catch (RpcException) { } // the stream broke: the next probe makes a new one
        catch (IOException) { }
    }

    private async Task DeliveredAsync(long revision, CancellationToken cancellationToken)
    {
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            if (_delivered >= revision) return;
            _waiter = (revision, seen);
        }
        try
        {
            await seen.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            lock (_lock) _waiter = null;
        }
    }

    private void DropWatch()
    {
        _watch?.Dispose();
        _watch = null;
    }

    public void Dispose()
    {
        DropWatch();
        _etcd.Dispose();
    }
}
