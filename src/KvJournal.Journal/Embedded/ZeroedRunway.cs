using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace KvJournal.Journal.Embedded;

/// <summary>
/// Keeps the log's segment file written with zeros, and flushed, ahead of its tail, so that a
/// commit's synchronous write lands in blocks the file system has already allocated and written.
/// Into a file that grows (or into fallocate's unwritten extents) ext4 journals the allocation with
/// every synchronous write: a 4 KiB O_DSYNC write measured 167 µs growing the file, 337 µs into
/// fallocated space and 104 µs into zeros written before; a durable put at one client was 15–20%
/// faster. Not used on memory file systems (tmpfs), which allocate nothing.
/// </summary>
/// <remarks>
/// Zeros must never land on anything FasterLog writes. It writes the entries enqueued and, at each
/// commit, a commit record after them; either starts the next page when it does not fit the rest
/// of its page (<see cref="FasterReach"/>). A chunk is chosen under the journal's append lock,
/// beyond the reach of the data enqueued so far, and while it is being written an entry whose reach
/// would pass its start waits (<see cref="WaitBeforeEnqueue"/>): chunks are written a runway ahead
/// of need, so that wait is rare (after a start, the first chunk begins 64 KiB past the tail). A chunk
/// that cannot be written (a full disk) pauses the runway for a while: appends never fail or wait
/// for it. The file ends in zeros past the last entry, which FasterLog's recovery reads as the end.
/// </remarks>
internal sealed class ZeroedRunway : IAsyncDisposable
{
    private const long BlockBytes = 4096;
    // More than a FasterLog record's header (length, checksum) and a fast-commit record, with the sector padding of a write.
    private const long RecordSlack = 64 << 10;
    private static readonly TimeSpan PauseAfterFailure = TimeSpan.FromSeconds(10);

    private readonly string _directory;
    private readonly int _maxEntryBytes;
    private readonly Lock _appendLock;
    private readonly Func<long> _tail;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly long _pageBytes;
    private readonly byte[] _zeros;
    private readonly long _length;
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _zeroing;
    private SafeFileHandle? _segment;
    private string? _segmentPath;
    // Zeros are written and flushed up to here (a log address), from the first chunk on.
    private long _zeroedUpTo;
    // The first address of the chunk being written, long.MaxValue while none is.
    private long _zeroingFrom = long.MaxValue;
    private long _pausedUntil;

    /// <summary>How the runway is written: chunks of <paramref name="ChunkBytes"/>, <paramref name="Chunks"/> of them ahead of the tail.</summary>
    internal readonly record struct Shape(int ChunkBytes, int Chunks)
    {
        /// <summary>16 MiB ahead in 1 MiB chunks: a chunk is written about every megabyte of log.</summary>
        public static Shape Default { get; } = new(1 << 20, 16);
    }

    private ZeroedRunway(string directory, int maxEntryBytes, Shape shape, Lock appendLock, Func<long> tail, TimeProvider time, ILogger logger)
    {
        _directory = directory;
        _maxEntryBytes = maxEntryBytes;
        _appendLock = appendLock;
        _tail = tail;
        _time = time;
        _logger = logger;
        _pageBytes = 1L << LogInstance.PageBitsFor(maxEntryBytes);
        _zeros = new byte[shape.ChunkBytes];
        _length = (long)shape.ChunkBytes * shape.Chunks;
        _zeroing = Task.Run(ZeroLoopAsync);
        Advance(tail());
    }

    /// <summary>A runway for the log under <paramref name="directory"/>, or null where the file system would not gain from one.</summary>
    /// <param name="appendLock">The journal's append lock: held while a chunk is chosen, so no append moves the tail meanwhile.</param>
    /// <param name="tail">The log's tail address (read under <paramref name="appendLock"/>).</param>
    public static ZeroedRunway? Start(string directory, int maxEntryBytes, Shape shape, Lock appendLock, Func<long> tail, TimeProvider time, ILogger logger) =>
        OnMemoryFileSystem(directory) ? null : new ZeroedRunway(directory, maxEntryBytes, shape, appendLock, tail, time, logger);

    private static bool OnMemoryFileSystem(string directory)
    {
        try
        {
            return new DriveInfo(directory).DriveFormat is "tmpfs" or "ramfs";
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>The tail moved to <paramref name="tail"/> (after a commit): zeros are written ahead again once half the runway is used.</summary>
    public void Advance(long tail)
    {
        if (Volatile.Read(ref _zeroedUpTo) - tail < _length / 2) _wake.Writer.TryWrite(true);
    }

    /// <summary>
    /// Called under the journal's append lock before an entry of <paramref name="length"/> bytes is
    /// enqueued at <paramref name="tail"/>: waits while the chunk being zeroed could be where it lands.
    /// </summary>
    public void WaitBeforeEnqueue(long tail, int length)
    {
        long reach = FasterReach(Landing(tail, length + RecordSlack) + length + RecordSlack);
        var wait = new SpinWait();
        while (reach > Volatile.Read(ref _zeroingFrom)) wait.SpinOnce(sleep1Threshold: 20);
    }

    /// <summary>
    /// The end of what FasterLog may write while its data ends at <paramref name="end"/>: the data
    /// and a commit record after it, on the next page when the record does not fit this one.
    /// </summary>
    private long FasterReach(long end) => Landing(end, RecordSlack) + RecordSlack;

    // Where a record of `bytes` goes when the log ends at `end`: there, or the next page's start.
    private long Landing(long end, long bytes) => end % _pageBytes + bytes > _pageBytes ? end - end % _pageBytes + _pageBytes : end;

    private async Task ZeroLoopAsync()
    {
        try
        {
            while (await _wake.Reader.WaitToReadAsync(_stopping.Token).ConfigureAwait(false))
            {
                _wake.Reader.TryRead(out _);
                if (_time.GetTimestamp() < Volatile.Read(ref _pausedUntil)) continue;
                while (!_stopping.IsCancellationRequested && ZeroNextChunk()) { }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    // Writes the next chunk when the runway is short; false when it is long enough or cannot grow now.
    private bool ZeroNextChunk()
    {
        try
        {
            long from;
            lock (_appendLock)
            {
                long tail = _tail();
                if (_zeroedUpTo - tail >= _length) return false;
                from = Math.Max(_zeroedUpTo, (FasterReach(tail) + BlockBytes - 1) & ~(BlockBytes - 1));
                Volatile.Write(ref _zeroingFrom, from);
            }
            var segment = Segment(from);
            long offset = LogInstance.OffsetInSegment(_maxEntryBytes, from);
            // A chunk ends at its segment's end at the latest.
            int bytes = (int)Math.Min(_zeros.Length, (1L << LogInstance.SegmentBitsFor(_maxEntryBytes)) - offset);
            RandomAccess.Write(segment, _zeros.AsSpan(0, bytes), offset);
            RandomAccess.FlushToDisk(segment);
            Volatile.Write(ref _zeroedUpTo, from + bytes);
            return true;
        }
        catch (Exception ex)
        {
            // A full disk (the log reports that itself when it fails to commit), or the log being
            // replaced while it heals: ahead of the log this only costs speed.
            Volatile.Write(ref _pausedUntil, _time.GetTimestamp() + (long)(PauseAfterFailure.TotalSeconds * _time.TimestampFrequency));
            if (_logger.IsEnabled(LogLevel.Debug)) _logger.LogDebug(ex, "journal: zeros could not be written ahead of the log's tail; trying again in {Seconds} s", PauseAfterFailure.TotalSeconds);
            return false;
        }
        finally
        {
            Volatile.Write(ref _zeroingFrom, long.MaxValue);
        }
    }

    // The segment file holding `position`, opened beside FasterLog's own handle (created if FasterLog has not yet).
    private SafeFileHandle Segment(long position)
    {
        string path = LogInstance.SegmentFile(_directory, _maxEntryBytes, position);
        if (path != _segmentPath)
        {
            _segment?.Dispose();
            _segment = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
            _segmentPath = path;
        }
        return _segment!;
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _zeroing.ConfigureAwait(false);
        _segment?.Dispose();
        _stopping.Dispose();
    }
}
