using System.Buffers.Binary;
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
/// is one write: the commit record goes into the log's tail page with the entries (fast commit),
/// into file space zeroed ahead of the tail (<see cref="ZeroedRunway"/>).
/// Position = the entry's FasterLog logical address. Snapshots are files beside the log
/// (directory/snapshots); storing one trims the log below the oldest snapshot kept.
/// <para>
/// Integrity (FasterLogJournal.Recovery.cs): each entry is stored behind a sequence number, so a
/// reader notices entries missing in the middle, and a <see cref="DurableTailMark"/> notices
/// entries missing at the end; a damaged log refuses to open unless the operator accepts the loss.
/// A failed commit (a full disk) fails the appends it covered and the journal heals once the
/// device takes writes again (FasterLogJournal.Healing.cs).
/// </para>
/// </remarks>
public sealed partial class FasterLogJournal : IJournal
{
    // Appends waiting for a commit, in address order: an append queues its waiter (under
    // _waitingLock) while it still holds _appendLock, so the queue order is the log order. The
    // commit loop takes only _waitingLock: an append holding _appendLock may be waiting for room
    // in FasterLog's memory, which only the commit loop's next flush makes.
    private readonly Lock _appendLock = new();
    private readonly Lock _waitingLock = new();
    private readonly Queue<(long Position, TaskCompletionSource<long> Done)> _waiting = new();
    private readonly Channel<bool> _commitSignal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _commitLoop;
    private readonly SnapshotFiles _snapshots;
    private readonly DurableTailMark _tailMark;
    private readonly ZeroedRunway? _runway;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly string _directory;
    private readonly int _maxEntryBytes;
    private readonly bool _sequenced;

    // The open log; replaced as a whole when the journal heals after a failed commit.
    private LogInstance _instance;
    // The last entry enqueued and its sequence number: written under _appendLock (PublishTail),
    // read by the commit loop without it (ReadTail).
    private long _lastEnqueued = -1;
    private long _lastSequence;
    private long _lastDurable = -1;
    private long _commits;
    private Exception? _failure;
    // Set (without _appendLock) as soon as a commit fails, so an append waiting for room gives up.
    private bool _commitFailed;

    // FasterLog's first entry address: a log that begins later has been trimmed.
    private const long FirstAddress = 64;
    private const int SequenceBytes = 8;

    /// <summary>
    /// Puts a state that covers no entry (a keyspace imported from etcd) where a journal about to
    /// be made in <paramref name="directory"/> finds it as its first snapshot (position -1). The
    /// log itself is left for the member to make at its first start, with its own settings;
    /// refused (<see cref="InvalidOperationException"/>) where a journal exists already.
    /// </summary>
    public static async Task PutImportedStateAsync(string directory, Stream state, CancellationToken cancellationToken)
    {
        if (!IsNew(directory))
            throw new InvalidOperationException($"{directory} holds a journal already: an imported state only goes into a new one");
        await new SnapshotFiles(Path.Combine(directory, SnapshotsFolder)).PutImportedAsync(state, cancellationToken).ConfigureAwait(false);
    }

    private const string SnapshotsFolder = "snapshots";

    /// <summary>Whether <paramref name="directory"/> holds no journal yet.</summary>
    public static bool IsNew(string directory) => !Directory.Exists(directory) || !Directory.EnumerateFileSystemEntries(directory).Any();

    /// <param name="acceptLoss">
    /// start even when entries below the last known commit are missing or damaged, going on with
    /// what can be read (the operator's way out, --unsafe-accept-journal-loss); otherwise such a
    /// log refuses to open with <see cref="JournalDamagedException"/>.
    /// </param>
    public FasterLogJournal(string directory, int maxEntryBytes, ILogger? logger = null, bool acceptLoss = false, TimeProvider? time = null)
        : this(directory, maxEntryBytes, ZeroedRunway.Shape.Default, logger, acceptLoss, time)
    {
    }

    /// <summary>A journal whose zeros ahead of the tail are written in <paramref name="runway"/>'s shape (tests make it short).</summary>
    internal FasterLogJournal(string directory, int maxEntryBytes, ZeroedRunway.Shape runway, ILogger? logger = null, bool acceptLoss = false, TimeProvider? time = null)
    {
        Directory.CreateDirectory(directory);
        _directory = directory;
        _maxEntryBytes = maxEntryBytes;
        _acceptLoss = acceptLoss;
        _logger = logger ?? NullLogger.Instance;
        _time = time ?? TimeProvider.System;
        _sequenced = IsSequenced(directory);
        _acceptedBelow = AcceptedLossPosition(directory);
        var mark = DurableTailMark.Read(directory, out string? markProblem);
        if (markProblem is not null) _logger.LogWarning("journal: {Problem}; it is ignored", markProblem);
        if (mark is { } before) CheckFilesHold(before.Position);
        _instance = LogInstance.Open(directory, maxEntryBytes);
        _snapshots = new SnapshotFiles(Path.Combine(directory, SnapshotsFolder));
        (_lastEnqueued, _lastSequence) = FindLastEntry(_instance.Log, mark);
        (_lastDurable, _durableSequence) = (_lastEnqueued, _lastSequence);
        _tailMark = DurableTailMark.Open(directory, _time);
        _tailMark.Advance(_lastSequence, _lastEnqueued, idle: true);
        _commitLoop = Task.Run(CommitLoopAsync);
        _runway = ZeroedRunway.Start(directory, maxEntryBytes, runway, _appendLock, () => Log.TailAddress, _time, _logger);
    }

    private FasterLog Log => Volatile.Read(ref _instance).Log;

    public long LastDurablePosition => Volatile.Read(ref _lastDurable);

    // The durable tail is known even while commits fail, so reads at it stay linearizable.
    public ValueTask<long> ReadIndexAsync(CancellationToken cancellationToken) => _stopping.IsCancellationRequested
        ? ValueTask.FromException<long>(new JournalUnavailableException("journal is closed"))
        : ValueTask.FromResult(LastDurablePosition);

    public bool IsReachable => Volatile.Read(ref _failure) is null && !_stopping.IsCancellationRequested;

    /// <summary>Position of the first retained entry (or where the next one will go when none is).</summary>
    public long FirstPosition => Log.BeginAddress;

    /// <summary>Flushes made so far; fewer than appends when group commit shares them.</summary>
    public long Commits => Interlocked.Read(ref _commits);

    public ValueTask<long> AppendAsync(ReadOnlyMemory<byte> entry, CancellationToken cancellationToken = default)
    {
        var done = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_appendLock)
        {
            if (_failure is not null) throw new JournalUnavailableException("journal cannot write: " + _failure.Message, _failure);
            if (_stopping.IsCancellationRequested) throw new JournalUnavailableException("journal is closed");
            long sequence = _sequenced ? _lastSequence + 1 : _lastSequence;
            long position = EnqueueWhenRoom(new Record(_sequenced, sequence, entry));
            // Waiter first, tail second: a commit loop that reads this tail finds its waiter queued.
            lock (_waitingLock) _waiting.Enqueue((position, done));
            PublishTail(position, sequence);
        }
        _commitSignal.Writer.TryWrite(true);
        return new ValueTask<long>(done.Task.WaitAsync(cancellationToken));
    }

    /// <summary>
    /// What one append stores: the entry, behind its sequence number unless the log was written
    /// before sequence numbers. FasterLog writes it straight into its tail page, so an append
    /// copies the entry once and allocates no buffer for it.
    /// </summary>
    private readonly struct Record(bool sequenced, long sequence, ReadOnlyMemory<byte> entry) : ILogEnqueueEntry
    {
        public int SerializedLength => (sequenced ? SequenceBytes : 0) + entry.Length;

        public void SerializeTo(Span<byte> destination)
        {
            if (sequenced)
            {
                BinaryPrimitives.WriteInt64LittleEndian(destination, sequence);
                destination = destination[SequenceBytes..];
            }
            entry.Span.CopyTo(destination);
        }
    }

    // Under _appendLock. FasterLog takes an entry only while its two tail pages have room; a full
    // page is freed by the commit loop's flush, so this waits for that (asking for it) instead of
    // spinning in FasterLog's Enqueue. After a failed commit no flush will come: it gives up.
    private long EnqueueWhenRoom(Record record)
    {
        _runway?.WaitBeforeEnqueue(Log.TailAddress, record.SerializedLength);
        var wait = new SpinWait();
        long position;
        while (!Log.TryEnqueue(record, out position))
        {
            if (Volatile.Read(ref _commitFailed)) throw new JournalUnavailableException("journal cannot write: its last commit failed");
            _commitSignal.Writer.TryWrite(true);
            wait.SpinOnce(sleep1Threshold: 20);
        }
        return position;
    }

    // The last entry enqueued is published with a version counter (odd while being written), so
    // the commit loop reads a consistent (position, sequence) without _appendLock: an Enqueue that
    // spins while FasterLog's memory is full holds that lock, and the commit that frees the memory
    // must not wait for it. Written under _appendLock only.
    private long _tailVersion;

    private void PublishTail(long position, long sequence)
    {
        Interlocked.Increment(ref _tailVersion);
        Volatile.Write(ref _lastEnqueued, position);
        Volatile.Write(ref _lastSequence, sequence);
        Interlocked.Increment(ref _tailVersion);
    }

    private (long Position, long Sequence) ReadTail()
    {
        var spin = new SpinWait();
        while (true)
        {
            long version = Volatile.Read(ref _tailVersion);
            if ((version & 1) == 0)
            {
                var tail = (Volatile.Read(ref _lastEnqueued), Volatile.Read(ref _lastSequence));
                if (Volatile.Read(ref _tailVersion) == version) return tail;
            }
            spin.SpinOnce();
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
                var (upTo, sequence) = ReadTail();
                if (upTo <= Volatile.Read(ref _lastDurable)) continue;
                try
                {
                    // Commits everything enqueued so far (FasterLog commits up to its tail); returns once durable.
                    await Log.CommitAsync(_stopping.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !_stopping.IsCancellationRequested)
                {
                    // Nothing after a failed commit can be acknowledged on this instance: fail what
                    // waits, then reopen the log once the device takes writes again.
                    await HealAsync(ex).ConfigureAwait(false);
                    continue;
                }
                Interlocked.Increment(ref _commits);
                Volatile.Write(ref _durableSequence, sequence);
                Volatile.Write(ref _lastDurable, upTo);
                CompleteWaiters(upTo, null);
                _tailMark.Advance(sequence, upTo, idle: !reader.TryPeek(out _));
                _runway?.Advance(upTo);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        CompleteWaiters(long.MaxValue, new JournalUnavailableException("journal is closed"));
    }

    private void CompleteWaiters(long durableUpTo, Exception? error)
    {
        lock (_waitingLock)
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
        long begin = Log.BeginAddress;
        // FasterLog scans only from an entry's address: start at the last entry the reader has
        // and skip it. Below the first retained entry the reader lacks what trimming dropped.
        if (afterPosition < 0 ? begin > FirstAddress : afterPosition < begin)
            throw new JournalTrimmedException($"journal entries after position {afterPosition} were trimmed; the first retained position is {begin}");
        var chain = new SequenceChain(this, first: afterPosition < 0 ? 1 : 0);
        var record = new RecordBuffer();
        long last = afterPosition;
        // One pass per log instance: when the journal heals, the reader goes on from the last entry
        // it had on the reopened log.
        while (!cancellationToken.IsCancellationRequested)
        {
            var instance = await InstanceToReadAsync(cancellationToken).ConfigureAwait(false);
            if (instance is null) yield break;
            using var iterator = instance.Log.Scan(Math.Max(last, instance.Log.BeginAddress), long.MaxValue, scanUncommitted: false);
            using var replacedOrCancelled = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, instance.Replaced);
            try
            {
                while (true)
                {
                    while (Next(iterator, record))
                    {
                        long position = record.Position;
                        // The entry the reader already has names where it is: check it only to seed the chain.
                        if (position <= last && chain.Seeded) continue;
                        int body = chain.Check(record.Span, position);
                        if (position <= last) continue;
                        last = position;
                        yield return new JournalRecord(position, record.Slice(body));
                    }
                    try
                    {
                        if (!await iterator.WaitAsync(replacedOrCancelled.Token).ConfigureAwait(false)) yield break;
                    }
                    catch (OperationCanceledException)
                    {
                        break; // closing, or the instance is being replaced
                    }
                    catch (Exception) when (Volatile.Read(ref _failure) is not null)
                    {
                        break; // the commit failed (FasterLog hands its failure to waiting readers): go on with the healed log
                    }
                }
            }
            finally
            {
                instance.ReaderLeft();
            }
        }
    }

    public Task TrimBelowAsync(long position, CancellationToken cancellationToken)
    {
        // Takes effect at once for readers; the new begin address is persisted with the next commit.
        // A failed log is left alone until it is reopened.
        if (!IsReachable) return Task.CompletedTask;
        var log = Log;
        if (position > log.BeginAddress) log.TruncateUntil(Math.Min(position, LastDurablePosition + 1));
        return Task.CompletedTask;
    }

    public async Task PutSnapshotAsync(long position, Stream snapshot, CancellationToken cancellationToken)
    {
        long oldestKept = await _snapshots.PutAsync(position, snapshot, cancellationToken).ConfigureAwait(false);
        await TrimBelowAsync(oldestKept, cancellationToken).ConfigureAwait(false);
    }

    public Task<JournalSnapshot?> GetSnapshotAsync(long belowPosition, CancellationToken cancellationToken) => Task.FromResult(_snapshots.OpenNewest(belowPosition));

    public string Describe(long position) =>
        $"{SegmentFile(position)} offset {LogInstance.OffsetInSegment(_maxEntryBytes, position)} (position {position})";

    private string SegmentFile(long position) => LogInstance.SegmentFile(_directory, _maxEntryBytes, position);

    public async ValueTask DisposeAsync()
    {
        lock (_appendLock)
        {
            if (_stopping.IsCancellationRequested) return;
            _stopping.Cancel();
        }
        try { await _commitLoop.ConfigureAwait(false); } catch (OperationCanceledException) { }
        if (_runway is not null) await _runway.DisposeAsync().ConfigureAwait(false);
        Volatile.Read(ref _instanceChanged).TrySetResult(); // readers waiting for a healed log see the journal closing
        _tailMark.Dispose();
        _instance.Dispose();
        _stopping.Dispose();
    }
}
