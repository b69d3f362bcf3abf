using System.Runtime.CompilerServices;
using System.Threading.Channels;
using FASTER.core;
using KvJournal.Journal.Snapshots;

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
/// commit that covers it has reached the device (the device writes through, O_DSYNC). A commit
/// is one write: the commit record goes into the log's tail page with the entries (fast commit).
/// Position = the entry's FasterLog logical address. Snapshots are files beside the log
/// (directory/snapshots); storing one trims the log below the oldest snapshot kept.
/// </remarks>
public sealed class FasterLogJournal : IJournal
{
    private readonly FasterLogSettings _settings;
    private readonly DeviceLogCommitCheckpointManager _commitMetadata;
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
    private readonly SnapshotFiles _snapshots;

    // Commits between two writes of the commit metadata file: the most a recovery scans forward.
    private const int CommitMetadataInterval = 1024;

    // FasterLog's first entry address: a log that begins later has been trimmed.
    private const long FirstAddress = 64;

    private readonly string _directory;
    private readonly int _segmentBits;

    public FasterLogJournal(string directory, int maxEntryBytes)
    {
        Directory.CreateDirectory(directory);
        _directory = directory;
        // An entry never spans a page: a page holds at least two of the largest entries (≥ 4 MiB).
        int pageBits = Math.Max(22, 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)maxEntryBytes * 2));
        // Fast commit: a commit is a record in the log itself, so it costs one write of the log's
        // tail. The commit metadata file (created, written and the old one unlinked: three more
        // synchronous file-system operations) is written only every CommitMetadataInterval commits
        // and whenever the begin address moves; recovery scans forward from it for commit records.
        _commitMetadata = new DeviceLogCommitCheckpointManager(new LocalStorageNamedDeviceFactory(),
            new DefaultCheckpointNamingScheme(directory), removeOutdated: true, fastCommitThrottleFreq: CommitMetadataInterval);
        _settings = new FasterLogSettings(directory, deleteDirOnDispose: false)
        {
            FastCommitMode = true,
            LogCommitManager = _commitMetadata,
            PageSizeBits = pageBits,
            MemorySizeBits = pageBits + 1,             // 2 pages of tail in memory: one filling while the other flushes
            SegmentSizeBits = _segmentBits = Math.Max(30, pageBits),  // 1 GiB files: trimming frees whole segments
            LogChecksum = LogChecksumType.PerEntry, // a torn entry at the tail is detected, not applied
            TryRecoverLatest = true,
        };
        _log = new FasterLog(_settings);
        _snapshots = new SnapshotFiles(Path.Combine(directory, "snapshots"));
        _lastEnqueued = _lastDurable = FindLastEntry();
        _commitLoop = Task.Run(CommitLoopAsync);
    }

    public long LastDurablePosition => Volatile.Read(ref _lastDurable);

    public ValueTask<long> ReadIndexAsync(CancellationToken cancellationToken) => IsReachable
        ? ValueTask.FromResult(LastDurablePosition)
        : ValueTask.FromException<long>(new JournalUnavailableException(_failure is null ? "journal is closed" : "journal failed", _failure));

    public bool IsReachable => Volatile.Read(ref _failure) is null && !_stopping.IsCancellationRequested;

    /// <summary>Position of the first retained entry (or where the next one will go when none is).</summary>
    public long FirstPosition => _log.BeginAddress;

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
            lock (_appendLock) Volatile.Write(ref _failure, ex);
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

    public async IAsyncEnumerable<JournalRecord> ReadAsync(long afterPosition, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        long begin = _log.BeginAddress;
        // FasterLog scans only from an entry's address: start at the last entry the reader has
        // and skip it. Below the first retained entry the reader lacks what trimming dropped.
        if (afterPosition < 0 ? begin > FirstAddress : afterPosition < begin)
            throw new JournalTrimmedException($"journal entries after position {afterPosition} were trimmed; the first retained position is {begin}");
        using var iterator = _log.Scan(Math.Max(afterPosition, begin), long.MaxValue, scanUncommitted: false);
        while (!cancellationToken.IsCancellationRequested)
        {
            while (iterator.GetNext(out byte[] data, out int length, out long position))
            {
                if (position <= afterPosition) continue;
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

    public Task TrimBelowAsync(long position, CancellationToken cancellationToken)
    {
        // Takes effect at once for readers; the new begin address is persisted with the next commit.
        if (position > _log.BeginAddress) _log.TruncateUntil(Math.Min(position, LastDurablePosition + 1));
        return Task.CompletedTask;
    }

    public async Task PutSnapshotAsync(long position, Stream snapshot, CancellationToken cancellationToken)
    {
        long oldestKept = await _snapshots.PutAsync(position, snapshot, cancellationToken).ConfigureAwait(false);
        await TrimBelowAsync(oldestKept, cancellationToken).ConfigureAwait(false);
    }

    public Task<JournalSnapshot?> GetSnapshotAsync(CancellationToken cancellationToken) => Task.FromResult(_snapshots.OpenNewest());

    // FasterLog names its segment files log.N, each 2^SegmentSizeBits bytes of the address space.
    public string Describe(long position) =>
        $"{Path.Combine(_directory, "log." + (position >> _segmentBits))} offset {position & ((1L << _segmentBits) - 1)} (position {position})";

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
        _commitMetadata.Dispose();
        _settings.Dispose();
        _stopping.Dispose();
    }
}
