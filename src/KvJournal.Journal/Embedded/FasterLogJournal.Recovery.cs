using System.Buffers.Binary;
using System.Globalization;
using FASTER.core;
using Microsoft.Extensions.Logging;

namespace KvJournal.Journal.Embedded;

/// <summary>
/// The embedded journal's integrity checks: what a log must hold when it opens, and what every
/// record read from it must carry.
/// </summary>
/// <remarks>
/// FasterLog reads a zeroed record header as the end of a page and skips the rest of it silently,
/// and its per-entry checksum covers only pages it reads from the device, not the tail it
/// recovers into memory. So each record carries a sequence number (8 bytes, little-endian,
/// counting from 1) that readers check for gaps, and the <see cref="DurableTailMark"/> tells a
/// log that lost its end. The entries' own checksums are the member's (its entry format).
/// Logs written before sequence numbers (no "format" file) are read as they are, unchecked.
/// </remarks>
public sealed partial class FasterLogJournal
{
    // "format" holds 2 in a log whose records carry sequence numbers; absent in older logs.
    private const string FormatFile = "format";
    private const string AcceptedLossFile = "accepted-loss";

    private const string OperatorHint =
        ". Restore the member from a backup or another member's data, or start it with --unsafe-accept-journal-loss to go on with the entries that can be read (acknowledged writes after the damage are lost and their revisions may be reused)";

    private readonly bool _acceptLoss;
    // Damage at or below this position was accepted by an operator at an earlier open (the
    // "accepted-loss" file): it is logged, not refused, so one acceptance holds across restarts.
    private readonly long _acceptedBelow;
    private bool _damageAccepted;

    private static bool IsSequenced(string directory)
    {
        string format = Path.Combine(directory, FormatFile);
        if (!Directory.EnumerateFiles(directory, "fasterlog.log.*").Any() && !File.Exists(format)) File.WriteAllText(format, "2\n");
        return File.Exists(format);
    }

    private static long AcceptedLossPosition(string directory)
    {
        string path = Path.Combine(directory, AcceptedLossFile);
        return File.Exists(path) && long.TryParse(File.ReadAllText(path), CultureInfo.InvariantCulture, out long accepted) ? accepted : -1;
    }

    // A log file shorter than the newest entry known durable was truncated: refuse before FasterLog
    // opens it (its recovery reads past the end of such a file).
    private void CheckFilesHold(long position)
    {
        string file = SegmentFile(position);
        long needed = LogInstance.OffsetInSegment(_maxEntryBytes, position) + 1;
        long length = File.Exists(file) ? new FileInfo(file).Length : 0;
        if (length < needed)
            Damaged(position, $"{file} is {length} bytes, but an entry at offset {needed - 1} was acknowledged durable: the file was truncated or lost");
    }

    // The last committed entry and its sequence number, found by a scan at open that checks every
    // record, and against the mark of the newest entry known durable. FasterLog's recovery
    // already dropped a tail that was never committed; that is a write cut short, logged here.
    private (long Position, long Sequence) FindLastEntry(FasterLog log, (long Sequence, long Position)? mark)
    {
        long last = -1;
        long begin = log.BeginAddress, committed = log.CommittedUntilAddress;
        var chain = new SequenceChain(this, first: begin == FirstAddress ? 1 : 0);
        using (var iterator = log.Scan(begin, committed, scanUncommitted: false))
        {
            var record = new RecordBuffer();
            while (Next(iterator, record))
            {
                chain.Check(record.Span, record.Position);
                last = record.Position;
            }
        }
        long sequence = _sequenced ? chain.Last : 0;
        if (mark is { } m && (last < m.Position || sequence < m.Sequence))
            Damaged(m.Position, $"acknowledged journal entries are missing at the end: entry {m.Sequence} at {Describe(m.Position)} was durable, but the log ends at entry {sequence} at {Describe(Math.Max(last, 0))}");
        LogUncommittedTail(committed);
        if (_damageAccepted)
        {
            File.WriteAllText(Path.Combine(_directory, AcceptedLossFile), Math.Max(last, committed).ToString(CultureInfo.InvariantCulture));
            _damageAccepted = false;
        }
        return (last, sequence);
    }

    // Bytes past the last commit other than the zeros written ahead of the tail (ZeroedRunway) are
    // a write cut short: said once at open.
    private void LogUncommittedTail(long committed)
    {
        string file = SegmentFile(committed);
        if (!File.Exists(file)) return;
        long end = (LogInstance.OffsetInSegment(_maxEntryBytes, committed) + 4095) & ~4095L;
        long past = LastNonZeroByte(file, end) - end + 1;
        if (past > 0 && _logger.IsEnabled(LogLevel.Warning))
            _logger.LogWarning("journal: {Bytes} bytes after the last commit at {Position} were never committed (a write cut short by a crash or a failed commit); they are ignored and will be overwritten",
                past, Describe(committed));
    }

    // The offset of the last byte of the file at or after `from` that is not zero (from - 1 when there is none).
    private static long LastNonZeroByte(string file, long from)
    {
        using var handle = File.OpenHandle(file);
        long last = from - 1;
        var buffer = new byte[1 << 16];
        for (long at = from; ; at += buffer.Length)
        {
            int n = RandomAccess.Read(handle, buffer, at);
            if (n <= 0) return last;
            int i = buffer.AsSpan(0, n).LastIndexOfAnyExcept((byte)0);
            if (i >= 0) last = at + i;
        }
    }

    // FasterLog throws a bare exception for a record it cannot read (a bad length, a failed
    // checksum on a page read from the device) and then skips the rest of that page.
    private bool Next(FasterLogScanIterator iterator, RecordBuffer record)
    {
        while (true)
        {
            long at = iterator.NextAddress;
            try
            {
                return iterator.TryConsumeNext(record);
            }
            catch (Exception ex) when (ex is not OperationCanceledException and not ObjectDisposedException)
            {
                Damaged(at, $"journal record at {Describe(at)} is unreadable: {ex.Message}", ex);
                if (iterator.NextAddress <= at) throw new JournalDamagedException($"journal record at {Describe(at)} is unreadable and cannot be skipped: {ex.Message}", ex);
            }
        }
    }

    /// <summary>
    /// The record a scan read last, copied out of FasterLog's memory into a buffer that one reader
    /// reuses for every record: reading a record allocates nothing once the buffer fits.
    /// </summary>
    private sealed class RecordBuffer : ILogEntryConsumer
    {
        private byte[] _bytes = new byte[4096];

        public long Position { get; private set; }

        public int Length { get; private set; }

        public ReadOnlySpan<byte> Span => _bytes.AsSpan(0, Length);

        public ReadOnlyMemory<byte> Slice(int start) => _bytes.AsMemory(start, Length - start);

        public void Consume(ReadOnlySpan<byte> entry, long currentAddress, long nextAddress)
        {
            if (entry.Length > _bytes.Length) _bytes = new byte[Math.Max(entry.Length, 2 * _bytes.Length)];
            entry.CopyTo(_bytes);
            Length = entry.Length;
            Position = currentAddress;
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

    /// <summary>
    /// Checks that each record carries the next sequence number and returns where its entry begins
    /// in the record. <c>first</c> is the number the first record must carry (0: any, the reader
    /// starts mid-log).
    /// </summary>
    private struct SequenceChain(FasterLogJournal journal, long first)
    {
        private long _expected = first;
        private bool _seeded = first != 0;

        /// <summary>Whether a record has fixed the numbers that follow (or the first one was known).</summary>
        public readonly bool Seeded => _seeded;

        public int Check(ReadOnlySpan<byte> data, long position)
        {
            if (!journal._sequenced) return 0;
            if (data.Length < SequenceBytes)
            {
                journal.Damaged(position, $"journal record at {journal.Describe(position)} is {data.Length} bytes, shorter than its sequence number");
                return data.Length;
            }
            long sequence = BinaryPrimitives.ReadInt64LittleEndian(data);
            if (_seeded && sequence != _expected)
                journal.Damaged(position, sequence > _expected
                    ? $"journal entries {_expected} to {sequence - 1} are missing before {journal.Describe(position)}"
                    : $"journal record at {journal.Describe(position)} has sequence number {sequence}, expected {_expected}");
            _expected = sequence + 1;
            _seeded = true;
            return SequenceBytes;
        }

        public readonly long Last => _expected - 1;
    }
}
