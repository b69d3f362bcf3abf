using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using KvJournal.Protos.JournalService;
using JournalClient = KvJournal.Protos.JournalService.Journal.JournalClient;

namespace KvJournal.Journal.Remote;

/// <summary>
/// One stream of a journal server (`kvjournal journal`), seen through <see cref="IJournal"/>: what a
/// member uses when it shares its journal with other members.
/// </summary>
/// <remarks>
/// Appends are batched: a few sender loops each take everything queued (up to a size limit) and
/// send it as one Append call, so under load many entries share a round trip and the server's
/// group commit. A failed call is retried with the same bytes for a short window while the journal
/// was reachable (a journal restart or a broken connection); the entries carry their proposer's
/// request id, so a retried entry that had been appended after all is dropped at apply. Once the
/// journal is known unreachable, appends try once and fail fast.
/// </remarks>
public sealed class RemoteJournal : IJournal
{
    private const int Senders = 4;
    private const int MaxBatchBytes = 4 << 20;
    private static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan RetryWindow = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromMilliseconds(500);

    private readonly JournalClient _client;
    private readonly string _stream;
    private readonly Channel<PendingAppend> _queue = Channel.CreateUnbounded<PendingAppend>(new UnboundedChannelOptions { SingleReader = false });
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task[] _senders;
    private long _lastDurable = -1;
    private volatile bool _reachable = true;

    // Read-index rounds: a read waits for a Status call sent after it arrived; reads arriving while
    // one call is out share the next one.
    private readonly Lock _indexLock = new();
    private TaskCompletionSource<long>? _nextRound;
    private bool _roundRunning;

    private readonly record struct PendingAppend(ReadOnlyMemory<byte> Entry, TaskCompletionSource<long> Done);

    public RemoteJournal(CallInvoker invoker, string stream)
    {
        _client = new JournalClient(invoker);
        _stream = stream;
        _senders = new Task[Senders];
        for (int i = 0; i < Senders; i++) _senders[i] = Task.Run(SendLoopAsync);
    }

    /// <summary>A channel to a journal server tuned for members: prompt reconnects, keep-alive pings, no message size cap.</summary>
    public static GrpcChannel Connect(Uri endpoint) => GrpcChannel.ForAddress(endpoint, new GrpcChannelOptions
    {
        MaxReceiveMessageSize = null,
        MaxSendMessageSize = null,
        InitialReconnectBackoff = TimeSpan.FromMilliseconds(100),
        MaxReconnectBackoff = TimeSpan.FromSeconds(1),
        HttpHandler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            KeepAlivePingDelay = TimeSpan.FromSeconds(5),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(5),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
            ConnectTimeout = TimeSpan.FromSeconds(2),
        },
    });

    public long LastDurablePosition => Volatile.Read(ref _lastDurable);

    public bool IsReachable => _reachable;

    public ValueTask<long> AppendAsync(ReadOnlyMemory<byte> entry, CancellationToken cancellationToken = default)
    {
        var done = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_queue.Writer.TryWrite(new PendingAppend(entry, done))) throw new JournalUnavailableException("journal client is closed");
        return new ValueTask<long>(done.Task.WaitAsync(cancellationToken));
    }

    private async Task SendLoopAsync()
    {
        var reader = _queue.Reader;
        var batch = new List<PendingAppend>();
        try
        {
            while (await reader.WaitToReadAsync(_stopping.Token).ConfigureAwait(false))
            {
                batch.Clear();
                int bytes = 0;
                while (bytes < MaxBatchBytes && reader.TryRead(out var item))
                {
                    batch.Add(item);
                    bytes += item.Entry.Length;
                }
                if (batch.Count > 0) await SendAsync(batch).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        foreach (var item in batch) item.Done.TrySetException(new JournalUnavailableException("journal client is closed"));
    }

    private async Task SendAsync(List<PendingAppend> batch)
    {
        var request = new AppendRequest { Stream = _stream };
        foreach (var item in batch) request.Entries.Add(UnsafeByteOperations.UnsafeWrap(item.Entry));
        var retryUntil = DateTime.UtcNow + (_reachable ? RetryWindow : TimeSpan.Zero);
        var backoff = TimeSpan.FromMilliseconds(25);
        while (true)
        {
            try
            {
                var response = await _client.AppendAsync(request, deadline: DateTime.UtcNow + AttemptTimeout, cancellationToken: _stopping.Token).ConfigureAwait(false);
                Reached(response.Positions.Count > 0 ? response.Positions[^1] : -1);
                for (int i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(response.Positions[i]);
                return;
            }
            catch (RpcException ex) when (!_stopping.IsCancellationRequested)
            {
                // The journal refused the batch itself (an entry too large, a bad stream name):
                // retrying cannot help, and nothing was appended.
                if (ex.StatusCode is StatusCode.InvalidArgument or StatusCode.OutOfRange or StatusCode.Unimplemented)
                {
                    var refused = new JournalUnavailableException($"journal refused the append: {ex.Status.Detail}", ex);
                    foreach (var item in batch) item.Done.TrySetException(refused);
                    return;
                }
                if (DateTime.UtcNow + backoff >= retryUntil)
                {
                    _reachable = false;
                    var failure = new JournalUnavailableException($"journal unreachable: {ex.Status.Detail}", ex);
                    foreach (var item in batch) item.Done.TrySetException(failure);
                    return;
                }
                await Task.Delay(backoff, _stopping.Token).ConfigureAwait(false);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
            }
        }
    }

    // The journal answered: it is reachable, and durable at least up to position.
    private void Reached(long position)
    {
        _reachable = true;
        long seen;
        while (position > (seen = Volatile.Read(ref _lastDurable)) && Interlocked.CompareExchange(ref _lastDurable, position, seen) != seen) { }
    }

    public ValueTask<long> ReadIndexAsync(CancellationToken cancellationToken)
    {
        Task<long> round;
        lock (_indexLock)
        {
            _nextRound ??= new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
            round = _nextRound.Task;
            if (!_roundRunning)
            {
                _roundRunning = true;
                _ = Task.Run(RunReadIndexRoundsAsync, CancellationToken.None);
            }
        }
        return new ValueTask<long>(round.WaitAsync(cancellationToken));
    }

    private async Task RunReadIndexRoundsAsync()
    {
        while (true)
        {
            TaskCompletionSource<long>? round;
            lock (_indexLock)
            {
                round = _nextRound;
                _nextRound = null;
                if (round is null)
                {
                    _roundRunning = false;
                    return;
                }
            }
            try
            {
                var status = await _client.StatusAsync(new StatusRequest { Stream = _stream }, deadline: DateTime.UtcNow + AttemptTimeout, cancellationToken: _stopping.Token).ConfigureAwait(false);
                Reached(status.LastDurablePosition);
                round.TrySetResult(status.LastDurablePosition);
            }
            catch (Exception ex)
            {
                if (ex is RpcException) _reachable = false;
                round.TrySetException(new JournalUnavailableException($"journal unreachable: {(ex as RpcException)?.Status.Detail ?? ex.Message}", ex));
            }
        }
    }

    public async IAsyncEnumerable<JournalRecord> ReadAsync(long afterPosition, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        long after = afterPosition;
        var backoff = TimeSpan.FromMilliseconds(50);
        while (!cancellationToken.IsCancellationRequested)
        {
            using (var call = _client.Read(new ReadRequest { Stream = _stream, AfterPosition = after }, cancellationToken: cancellationToken))
            {
                while (true)
                {
                    bool more;
                    try
                    {
                        more = await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false);
                    }
                    catch (RpcException ex) when (ex.StatusCode == StatusCode.OutOfRange)
                    {
                        throw new JournalTrimmedException(ex.Status.Detail);
                    }
                    catch (Exception ex) when (ex is RpcException or OperationCanceledException)
                    {
                        if (cancellationToken.IsCancellationRequested) yield break;
                        _reachable = false; // the journal went away: tail again once it is back
                        break;
                    }
                    if (!more) break;
                    var response = call.ResponseStream.Current;
                    Reached(response.DurablePosition);
                    backoff = TimeSpan.FromMilliseconds(50);
                    foreach (var entry in response.Entries)
                    {
                        yield return new JournalRecord(entry.Position, entry.Data.Memory);
                        after = entry.Position;
                    }
                }
            }
            try
            {
                await Task.Delay(backoff, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                yield break;
            }
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
        }
    }

    public async Task TrimBelowAsync(long position, CancellationToken cancellationToken)
    {
        try
        {
            await _client.TrimAsync(new TrimRequest { Stream = _stream, BelowPosition = position }, deadline: DateTime.UtcNow + AttemptTimeout, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (RpcException ex)
        {
            throw new JournalUnavailableException($"journal trim failed: {ex.Status.Detail}", ex);
        }
    }

    public async Task PutSnapshotAsync(long position, Stream snapshot, CancellationToken cancellationToken)
    {
        try
        {
            using var call = _client.PutSnapshot(cancellationToken: cancellationToken);
            var buffer = new byte[1 << 20];
            int n;
            bool sent = false;
            while ((n = await snapshot.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0 || !sent)
            {
                await call.RequestStream.WriteAsync(new SnapshotChunk { Stream = _stream, Position = position, Data = ByteString.CopyFrom(buffer, 0, n) }, cancellationToken).ConfigureAwait(false);
                sent = true;
                if (n == 0) break;
            }
            await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            await call.ResponseAsync.ConfigureAwait(false);
        }
        catch (RpcException ex)
        {
            throw new JournalUnavailableException($"journal snapshot upload failed: {ex.Status.Detail}", ex);
        }
    }

    public string Describe(long position) => $"journal server stream {_stream} position {position}";

    public async Task<JournalSnapshot?> GetSnapshotAsync(long belowPosition, CancellationToken cancellationToken)
    {
        // The journal server hands out its newest snapshot only.
        if (belowPosition != long.MaxValue) return null;
        var call = _client.GetSnapshot(new GetSnapshotRequest { Stream = _stream }, cancellationToken: cancellationToken);
        try
        {
            if (!await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            {
                call.Dispose();
                return null;
            }
            var first = call.ResponseStream.Current;
            return new JournalSnapshot(first.Position, new ChunkReadStream(call.ResponseStream, first, call), $"journal server stream {_stream} snapshot at position {first.Position}");
        }
        catch (RpcException ex)
        {
            call.Dispose();
            throw new JournalUnavailableException($"journal snapshot download failed: {ex.Status.Detail}", ex);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _stopping.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_senders).ConfigureAwait(false);
        while (_queue.Reader.TryRead(out var item)) item.Done.TrySetException(new JournalUnavailableException("journal client is closed"));
        _stopping.Dispose();
    }
}
