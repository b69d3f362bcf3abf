using System.Runtime.CompilerServices;
using System.Threading.Channels;
using FASTER.core;

namespace KvJournal.Journal.Embedded;

/// <summary>
/// The embedded journal: a FasterLog under the member's data directory. No FasterLog type leaves
/// this folder.
/// </summary>
/// <remarks>
/// FasterLog commits nothing by itself: <c>Enqueue</c> only places the entry in the in-memory tail.
/// A single commit loop makes entries durable. While one commit is being written, new appends
/// queue up and the next commit covers all of them (group commit), so the cost of a flush is
/// shared by every writer that arrived during the previous one. An append completes only after the
/// commit that covers it has reached the device (the device writes through, O_DSYNC).
/// Position = the entry's FasterLog logical address.
/// </remarks>
public sealed class FasterLogJournal : IJournal
{
    private readonly FasterLogSettings _settings;
    private readonly FasterLog _log;
    // Appends waiting for a commit, in address order: both are taken under _appendLock so the
    // queue order is the log order.
    private readonly Lock _appendLock = new();
    private readonly Queue<(long Position, TaskCompletionSource<long> Done)> _waiting = new();
    private readonly Channel<bool> _commitSignal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _commitLoop;
    private long _lastEnqueued = -1;
    private long _lastDurable = -1;
    private long _commits;
    private Exception? _failure;

    public FasterLogJournal(string directory, int maxEntryBytes)
    {
        Directory.CreateDirectory(directory);
        // An entry never spans a page: a page holds at least two of the largest entries (≥ 4 MiB).
        int pageBits = Math.Max(22, 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)maxEntryBytes * 2));
        _settings = new FasterLogSettings(directory, deleteDirOnDispose: false)
        {
            PageSizeBits = pageBits,
            MemorySizeBits = pageBits + 4,             // 16 pages of tail kept in memory for tailing readers
            SegmentSizeBits = Math.Max(30, pageBits),  // 1 GiB files: trimming frees whole segments
            LogChecksum = LogChecksumType.PerEntry, // a torn entry at the tail is detected, not applied
            TryRecoverLatest = true,
        };
        _log = new FasterLog(_settings);
        _lastEnqueued = _lastDurable = FindLastEntry();
        _commitLoop = Task.Run(CommitLoopAsync);
    }

    public long LastDurablePosition => Volatile.Read(ref _lastDurable);

    /// <summary>Flushes made so far; fewer than appends when group commit shares them.</summary>
    public long Commits => Interlocked.Read(ref _commits);

    public ValueTask<long> AppendAsync(ReadOnlyMemory<byte> entry, CancellationToken cancellationToken = default)
    {
        var done = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_appendLock)
        {
            if (_failure is not null) throw new JournalUnavailableException("journal failed", _failure);
            if (_stopping.IsCancellationRequested) throw new JournalUnavailableException("journal is closed");
            long position = _log.Enqueue(entry.Span);
            _lastEnqueued = position;
            _waiting.Enqueue((position, done));
        }
        _commitSignal.Writer.TryWrite(true);
        return new ValueTask<long>(done.Task.WaitAsync(cancellationToken));
    }

    private async Task CommitLoopAsync()
    {
        var reader = _commitSignal.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_stopping.Token).ConfigureAwait(false))
            {
                reader.TryRead(out _);
                long upTo;
                lock (_appendLock) upTo = _lastEnqueued;
                if (upTo <= Volatile.Read(ref _lastDurable)) continue;
                // Commits everything enqueued so far (FasterLog commits up to its tail); returns once durable.
                await _log.CommitAsync(_stopping.Token).ConfigureAwait(false);
                Interlocked.Increment(ref _commits);
                Volatile.Write(ref _lastDurable, upTo);
                CompleteWaiters(upTo, null);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            CompleteWaiters(long.MaxValue, new JournalUnavailableException("journal is closed"));
        }
        catch (Exception ex)
        {
            // Fail-stop: once a commit failed nothing after it can be acknowledged.
            lock (_appendLock) _failure = ex;
            CompleteWaiters(long.MaxValue, new JournalUnavailableException("journal commit failed", ex));
        }
    }

    private void CompleteWaiters(long durableUpTo, Exception? error)
    {
        lock (_appendLock)
        {
            while (_waiting.TryPeek(out var w) && w.Position <= durableUpTo)
            {
                _waiting.Dequeue();
                if (error is null) w.Done.TrySetResult(w.Position);
                else w.Done.TrySetException(error);
            }
        }
    }

    public async IAsyncEnumerable<JournalRecord> ReadAsync(long fromPosition, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        long begin = Math.Max(fromPosition, _log.BeginAddress);
        using var iterator = _log.Scan(begin, long.MaxValue, scanUncommitted: false);
        while (!cancellationToken.IsCancellationRequested)
        {
            while (iterator.GetNext(out byte[] data, out int length, out long position))
            {
                yield return new JournalRecord(position, data.AsMemory(0, length));
            }
            try
            {
                if (!await iterator.WaitAsync(cancellationToken).ConfigureAwait(false)) yield break;
            }
            catch (OperationCanceledException)
            {
                yield break;
            }
        }
    }

    // The address of the last committed entry, found by a scan at open (recovery already dropped
    // any tail that was not committed).
    private long FindLastEntry()
    {
        long last = -1;
        using var iterator = _log.Scan(_log.BeginAddress, _log.CommittedUntilAddress, scanUncommitted: false);
        while (iterator.GetNext(out _, out _, out long position)) last = position;
        return last;
    }

    public async ValueTask DisposeAsync()
    {
        lock (_appendLock)
        {
            if (_stopping.IsCancellationRequested) return;
            _stopping.Cancel();
        }
        try { await _commitLoop.ConfigureAwait(false); } catch (OperationCanceledException) { }
        _log.Dispose();
        _settings.Dispose();
        _stopping.Dispose();
    }
}
