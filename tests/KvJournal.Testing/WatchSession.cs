using System.Threading.Channels;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace KvJournal.Testing;

/// <summary>
/// One client Watch stream: requests go out as written; responses are read by a background loop
/// into a queue the test awaits (each wait bounded, so a missing response fails instead of hanging).
/// </summary>
public sealed class WatchSession : IAsyncDisposable
{
    private static readonly TimeSpan DefaultWait = TimeSpan.FromSeconds(30);
    private readonly AsyncDuplexStreamingCall<WatchRequest, WatchResponse> _call;
    private readonly Channel<WatchResponse> _received = Channel.CreateUnbounded<WatchResponse>();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _reading;
    private readonly SemaphoreSlim _sendLock = new(1, 1);

    /// <param name="readImmediately">false leaves responses unread (a slow client) until <see cref="StartReading"/>.</param>
    public WatchSession(GrpcChannel channel, bool requireLeader = false, bool readImmediately = true)
    {
        var headers = requireLeader ? new Metadata { { "hasleader", "true" } } : null;
        _call = new Watch.WatchClient(channel).Watch(headers, cancellationToken: _stop.Token);
        _startReading = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (readImmediately) _startReading.SetResult();
        _reading = Task.Run(ReadLoopAsync);
    }

    private readonly TaskCompletionSource _startReading;

    /// <summary>The status the stream ended with, once it has ended.</summary>
    public Status? EndStatus { get; private set; }

    public void StartReading() => _startReading.TrySetResult();

    private async Task ReadLoopAsync()
    {
        await _startReading.Task;
        try
        {
            while (await _call.ResponseStream.MoveNext(_stop.Token)) await _received.Writer.WriteAsync(_call.ResponseStream.Current);
            EndStatus = Status.DefaultSuccess;
            _received.Writer.TryComplete();
        }
        catch (RpcException ex)
        {
            EndStatus = ex.Status;
            _received.Writer.TryComplete(ex);
        }
        catch (OperationCanceledException ex)
        {
            _received.Writer.TryComplete(ex);
        }
    }

    public async Task SendAsync(WatchRequest request)
    {
        await _sendLock.WaitAsync();
        try { await _call.RequestStream.WriteAsync(request); }
        finally { _sendLock.Release(); }
    }

    public Task CreateAsync(WatchCreateRequest create) => SendAsync(new WatchRequest { CreateRequest = create });

    public Task CancelAsync(long watchId) => SendAsync(new WatchRequest { CancelRequest = new WatchCancelRequest { WatchId = watchId } });

    public Task RequestProgressAsync() => SendAsync(new WatchRequest { ProgressRequest = new WatchProgressRequest() });

    /// <summary>Creates a watch and returns its created response.</summary>
    public async Task<WatchResponse> WatchAsync(WatchCreateRequest create)
    {
        await CreateAsync(create);
        var created = await NextAsync();
        if (!created.Created) throw new InvalidOperationException($"expected a created response, got {created}");
        return created;
    }

    public async Task<WatchResponse> NextAsync(TimeSpan? wait = null)
    {
        using var timeout = new CancellationTokenSource(wait ?? DefaultWait);
        try
        {
            return await _received.Reader.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            throw new TimeoutException($"no watch response within {(wait ?? DefaultWait).TotalSeconds} s");
        }
    }

    /// <summary>True when a response is already waiting (never blocks).</summary>
    public bool TryNext(out WatchResponse response) => _received.Reader.TryRead(out response!);

    /// <summary>
    /// Reads responses until a progress response (watch_id -1) arrives, asking for one now and
    /// again every <paramref name="retry"/> while none came (etcd drops a request made while a
    /// watcher is still catching up). Returns the responses before it, and the progress revision.
    /// </summary>
    public async Task<(List<WatchResponse> Before, long Revision)> ReadUntilProgressAsync(TimeSpan? retry = null, TimeSpan? wait = null)
    {
        var before = new List<WatchResponse>();
        var deadline = DateTime.UtcNow + (wait ?? DefaultWait);
        await RequestProgressAsync();
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) throw new TimeoutException("no progress response");
            WatchResponse r;
            try
            {
                r = await NextAsync(retry is { } every && every < left ? every : left);
            }
            catch (TimeoutException) when (retry is not null && DateTime.UtcNow < deadline)
            {
                await RequestProgressAsync();
                continue;
            }
            if (IsStreamProgress(r)) return (before, r.Header.Revision);
            before.Add(r);
        }
    }

    public static bool IsStreamProgress(WatchResponse r) => r.WatchId == -1 && !r.Created && !r.Canceled && r.Events.Count == 0;

    public async ValueTask DisposeAsync()
    {
        try { await _call.RequestStream.CompleteAsync(); } catch (Exception) { /* already ended */ }
        _startReading.TrySetResult();
        await _stop.CancelAsync();
        try { await _reading; } catch (Exception) { /* ended by the cancel above */ }
        _call.Dispose();
        _stop.Dispose();
        _sendLock.Dispose();
    }

    public static WatchCreateRequest Create(string key, string? rangeEnd = null, long startRevision = 0, bool prevKv = false,
        bool progressNotify = false, bool fragment = false, long watchId = 0, params WatchCreateRequest.Types.FilterType[] filters)
    {
        var c = new WatchCreateRequest
        {
            Key = ByteString.CopyFromUtf8(key),
            StartRevision = startRevision,
            PrevKv = prevKv,
            ProgressNotify = progressNotify,
            Fragment = fragment,
            WatchId = watchId,
        };
        if (rangeEnd is not null) c.RangeEnd = ByteString.CopyFromUtf8(rangeEnd);
        c.Filters.AddRange(filters);
        return c;
    }

    /// <summary>The range_end that makes a watch cover every key with <paramref name="prefix"/> (etcd's GetPrefixRangeEnd).</summary>
    public static string PrefixEnd(string prefix)
    {
        var b = System.Text.Encoding.UTF8.GetBytes(prefix);
        for (int i = b.Length - 1; i >= 0; i--)
        {
            if (b[i] < 0xff)
            {
                b[i]++;
                return System.Text.Encoding.UTF8.GetString(b, 0, i + 1);
            }
        }
        return "\0";
    }
}
