using System.Runtime.CompilerServices;
using System.Threading.Channels;
using FASTER.core;
using KvJournal.Journal.Snapshots;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

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
/// <para>
/// Integrity: each entry is stored behind a sequence number (8 bytes, little-endian, counting up
/// by one from 1), so a reader notices an entry missing in the middle, which FasterLog itself
/// skips silently (it reads a zeroed header as the end of a page). The <see cref="DurableTailMark"/>
/// beside the log notices entries missing at the end. Either stops the open (or the reader) with
/// <see cref="JournalDamagedException"/>, unless the operator accepts the loss. The entries' own
/// checksums are the member's (its entry format); FasterLog's per-entry checksum covers only
/// pages it reads from the device, not the tail it recovers into memory.
/// Logs written before sequence numbers (no "format" file) are read as they are, unchecked.
/// </para>
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

    // "format" holds 2 in a log whose entries carry sequence numbers; absent in older logs.
    private const string FormatFile = "format";
    private const int SequenceBytes = 8;

    private readonly string _directory;
    private readonly int _segmentBits;
    private readonly bool _sequenced;
    private readonly bool _acceptLoss;
    // Damage at or below this position was accepted by an operator at an earlier open (the
    // "accepted-loss" file): it is logged, not refused, so one acceptance holds across restarts.
    private readonly long _acceptedBelow = -1;
    private const string AcceptedLossFile = "accepted-loss";
    private readonly ILogger _logger;
    private readonly DurableTailMark _tailMark;
    // Sequence number of the last entry enqueued; taken under _appendLock with _lastEnqueued.
    private long _lastSequence;

    /// <param name="acceptLoss">
    /// start even when entries below the last known commit are missing or damaged, going on with
    /// what can be read (the operator's way out, --unsafe-accept-journal-loss); otherwise such a
    /// log refuses to open.
    /// </param>
    public FasterLogJournal(string directory, int maxEntryBytes, ILogger? logger = null, bool acceptLoss = false, TimeProvider? time = null)
    {
        Directory.CreateDirectory(directory);
        _directory = directory;
        _acceptLoss = acceptLoss;
        _logger = logger ?? NullLogger.Instance;
        bool hasLog = Directory.EnumerateFiles(directory, "fasterlog.log.*").Any();
        string formatPath = Path.Combine(directory, FormatFile);
        if (!hasLog && !File.Exists(formatPath)) File.WriteAllText(formatPath, "2\n");
        _sequenced = File.Exists(formatPath);
        string acceptedPath = Path.Combine(directory, AcceptedLossFile);
        if (File.Exists(acceptedPath) && long.TryParse(File.ReadAllText(acceptedPath), System.Globalization.CultureInfo.InvariantCulture, out long accepted)) _acceptedBelow = accepted;
        var mark = DurableTailMark.Read(directory, out string? markProblem);
        if (markProblem is not null) _logger.LogWarning("journal: {Problem}; it is ignored", markProblem);
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
        if (mark is { } before) CheckFilesHold(before.Position);
        _log = OpenLog(_settings);
        _snapshots = new SnapshotFiles(Path.Combine(directory, "snapshots"));
        (_lastEnqueued, _lastSequence) = FindLastEntry(mark, out bool lossAccepted);
        if (lossAccepted) File.WriteAllText(acceptedPath, Math.Max(_lastEnqueued, _log.CommittedUntilAddress).ToString(System.Globalization.CultureInfo.InvariantCulture));
        _lastDurable = _lastEnqueued;
        _tailMark = DurableTailMark.Open(directory, time ?? TimeProvider.System);
        _tailMark.Advance(_lastSequence, _lastEnqueued, idle: true);
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
            long position = _sequenced ? EnqueueSequenced(entry.Span) : _log.Enqueue(entry.Span);
            _lastEnqueued = position;
            _waiting.Enqueue((position, done));
        }
        _commitSignal.Writer.TryWrite(true);
        return new ValueTask<long>(done.Task.WaitAsync(cancellationToken));
    }

    // Under _appendLock: the entry behind the next sequence number, in one record.
    private long EnqueueSequenced(ReadOnlySpan<byte> entry)
    {
        byte[] record = System.Buffers.ArrayPool<byte>.Shared.Rent(SequenceBytes + entry.Length);
        try
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(record, _lastSequence + 1);
            entry.CopyTo(record.AsSpan(SequenceBytes));
            long position = _log.Enqueue(record.AsSpan(0, SequenceBytes + entry.Length));
            _lastSequence++;
            return position;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(record);
        }
    }

    private async Task CommitLoopAsync()
    {
        var reader = _commitSignal.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_stopping.Token).ConfigureAwait(false))
            {
                reader.TryRead(out _);
                long upTo, sequence;
                lock (_appendLock) (upTo, sequence) = (_lastEnqueued, _lastSequence);
                if (upTo <= Volatile.Read(ref _lastDurable)) continue;
                // Commits everything enqueued so far (FasterLog commits up to its tail); returns once durable.
                await _log.CommitAsync(_stopping.Token).ConfigureAwait(false);
                Interlocked.Increment(ref _commits);
                Volatile.Write(ref _lastDurable, upTo);
                CompleteWaiters(upTo, null);
                _tailMark.Advance(sequence, upTo, idle: !reader.TryPeek(out _));
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
        var chain = new SequenceChain(this, first: afterPosition < 0 ? 1 : 0);
        while (!cancellationToken.IsCancellationRequested)
        {
            while (Next(iterator, out byte[] data, out int length, out long position))
            {
                int body = chain.Check(data, length, position);
                if (position <= afterPosition) continue;
                yield return new JournalRecord(position, data.AsMemory(body, length - body));
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

    // FasterLog throws a bare exception for a record it cannot read (a bad length, a failed
    // checksum on a page read from the device) and then skips the rest of that page.
    private bool Next(FasterLogScanIterator iterator, out byte[] data, out int length, out long position)
    {
        while (true)
        {
            long at = iterator.NextAddress;
            try
            {
                return iterator.GetNext(out data, out length, out position);
            }
            catch (Exception ex) when (ex is not OperationCanceledException and not ObjectDisposedException)
            {
                Damaged(at, $"journal record at {Describe(at)} is unreadable: {ex.Message}", ex);
                if (iterator.NextAddress <= at) throw new JournalDamagedException($"journal record at {Describe(at)} is unreadable and cannot be skipped: {ex.Message}", ex);
            }
        }
    }

    // Stops with the damage at position, or, when the operator accepted losses (now or at an
    // earlier open for this part of the log), logs it and goes on.
    private void Damaged(long position, string problem, Exception? inner = null)
    {
        if (position <= _acceptedBelow)
        {
            _logger.LogWarning("journal: {Problem}; an operator accepted this loss at an earlier start", problem);
            return;
        }
        if (!_acceptLoss) throw new JournalDamagedException(problem + OperatorHint, inner);
        _damageAccepted = true;
        _logger.LogError("journal: {Problem}; going on without it (--unsafe-accept-journal-loss)", problem);
    }

    private bool _damageAccepted;

    private const string OperatorHint =
        ". Restore the member from a backup or another member's data, or start it with --unsafe-accept-journal-loss to go on with the entries that can be read (acknowledged writes after the damage are lost and their revisions may be reused)";

    /// <summary>
    /// Checks that each record carries the next sequence number and returns where its entry begins
    /// in the record. <c>first</c> is the number the first record must carry (0: any, the reader
    /// starts mid-log).
    /// </summary>
    private struct SequenceChain(FasterLogJournal journal, long first)
    {
        private long _expected = first;

        public int Check(byte[] data, int length, long position)
        {
            if (!journal._sequenced) return 0;
            if (length < SequenceBytes)
            {
                journal.Damaged(position, $"journal record at {journal.Describe(position)} is {length} bytes, shorter than its sequence number");
                return length;
            }
            long sequence = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(data);
            if (_expected != 0 && sequence != _expected)
                journal.Damaged(position, sequence > _expected
                    ? $"journal entries {_expected} to {sequence - 1} are missing before {journal.Describe(position)}"
                    : $"journal record at {journal.Describe(position)} has sequence number {sequence}, expected {_expected}");
            _expected = sequence + 1;
            return SequenceBytes;
        }

        public readonly long Last => _expected - 1;
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

    public Task<JournalSnapshot?> GetSnapshotAsync(long belowPosition, CancellationToken cancellationToken) => Task.FromResult(_snapshots.OpenNewest(belowPosition));

    // FasterLog names its segment files fasterlog.log.N, each 2^SegmentSizeBits bytes of the address space.
    public string Describe(long position) =>
        $"{Path.Combine(_directory, "fasterlog.log." + (position >> _segmentBits))} offset {position & ((1L << _segmentBits) - 1)} (position {position})";

    // A log file shorter than the newest entry known durable was truncated: refuse before FasterLog
    // opens it (its recovery reads past the end of such a file).
    private void CheckFilesHold(long position)
    {
        string file = Path.Combine(_directory, "fasterlog.log." + (position >> _segmentBits));
        long needed = (position & ((1L << _segmentBits) - 1)) + 1;
        long length = File.Exists(file) ? new FileInfo(file).Length : 0;
        if (length < needed)
            Damaged(position, $"{file} is {length} bytes, but an entry at offset {needed - 1} was acknowledged durable: the file was truncated or lost");
    }

    private static FasterLog OpenLog(FasterLogSettings settings)
    {
        // Recovery of a damaged log can fail deep inside FasterLog, or never finish: bound it.
        var open = Task.Run(() => new FasterLog(settings));
        try
        {
            if (!open.Wait(RecoveryTimeout)) throw new JournalDamagedException($"the journal under {settings.LogCommitDir} did not recover within {RecoveryTimeout.TotalSeconds:0} s: its files are damaged");
            return open.Result;
        }
        catch (AggregateException ex)
        {
            throw new JournalDamagedException($"the journal under {settings.LogCommitDir} cannot be recovered: {ex.InnerException!.Message}", ex.InnerException);
        }
    }

    private static readonly TimeSpan RecoveryTimeout = TimeSpan.FromSeconds(60);

    // The last committed entry and its sequence number, found by a scan at open that checks every
    // record, and against the mark of the newest entry known durable. FasterLog's recovery
    // already dropped a tail that was never committed; that is a write cut short, logged here.
    private (long Position, long Sequence) FindLastEntry((long Sequence, long Position)? mark, out bool lossAccepted)
    {
        long last = -1;
        long begin = _log.BeginAddress, committed = _log.CommittedUntilAddress;
        var chain = new SequenceChain(this, first: begin == FirstAddress ? 1 : 0);
        using (var iterator = _log.Scan(begin, committed, scanUncommitted: false))
        {
            while (Next(iterator, out byte[] data, out int length, out long position))
            {
                chain.Check(data, length, position);
                last = position;
            }
        }
        long sequence = _sequenced ? chain.Last : 0;
        if (mark is { } m && (last < m.Position || sequence < m.Sequence))
            Damaged(m.Position, $"acknowledged journal entries are missing at the end: entry {m.Sequence} at {Describe(m.Position)} was durable, but the log ends at entry {sequence} at {Describe(Math.Max(last, 0))}");
        LogUncommittedTail(committed);
        lossAccepted = _damageAccepted;
        return (last, sequence);
    }

    private void LogUncommittedTail(long committed)
    {
        string file = Path.Combine(_directory, "fasterlog.log." + (committed >> _segmentBits));
        if (!File.Exists(file)) return;
        long end = committed & ((1L << _segmentBits) - 1);
        long past = new FileInfo(file).Length - ((end + 4095) & ~4095L);
        if (past > 0 && _logger.IsEnabled(LogLevel.Warning))
            _logger.LogWarning("journal: {Bytes} bytes after the last commit at {Position} were never committed (a write cut short by a crash); they are ignored and will be overwritten",
                past, Describe(committed));
    }

    public async ValueTask DisposeAsync()
    {
        lock (_appendLock)
        {
            if (_stopping.IsCancellationRequested) return;
            _stopping.Cancel();
        }
        try { await _commitLoop.ConfigureAwait(false); } catch (OperationCanceledException) { }
        _tailMark.Dispose();
        _log.Dispose();
        _commitMetadata.Dispose();
        _settings.Dispose();
        _stopping.Dispose();
    }
}
