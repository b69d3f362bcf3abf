using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace KvJournal.Journal.Embedded;

/// <summary>
/// A small file beside the log that remembers the newest entry known durable: its sequence number
/// and position. A log that reads back shorter than this mark lost acknowledged entries (a
/// truncated or zeroed file), which the log's own recovery cannot tell from a clean end.
/// </summary>
/// <remarks>
/// Written in place after a commit when the journal goes idle, or at most every
/// <see cref="Interval"/> under load, without a flush of its own: a crash can only leave an older
/// mark (never one past what was durable), so it never accuses a sound log; what it cannot vouch
/// for is the last interval of commits, or a mark the OS had not yet written when the machine
/// (not the process) went down. Layout: sequence (8 bytes), position (8), CRC-32C of both (4),
/// little-endian; a torn or unreadable mark is reported and ignored.
/// </remarks>
internal sealed class DurableTailMark : IDisposable
{
    public const string FileName = "durable-tail";
    private const int Bytes = 20;
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(5);

    private readonly SafeFileHandle _file;
    private readonly TimeProvider _time;
    private readonly byte[] _buffer = new byte[Bytes];
    private long _lastWrite;
    private (long Sequence, long Position) _pending = (-1, -1);

    private DurableTailMark(SafeFileHandle file, TimeProvider time)
    {
        _file = file;
        _time = time;
    }

    /// <summary>The mark as the last run left it: null when there is none; Problem set when it cannot be read.</summary>
    public static (long Sequence, long Position)? Read(string directory, out string? problem)
    {
        problem = null;
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < Bytes || Checksum(bytes) != BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(16)))
        {
            problem = $"{path} is unreadable ({bytes.Length} bytes, checksum mismatch): it was cut short by a crash";
            return null;
        }
        return (BinaryPrimitives.ReadInt64LittleEndian(bytes), BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(8)));
    }

    public static DurableTailMark Open(string directory, TimeProvider time) =>
        new(File.OpenHandle(Path.Combine(directory, FileName), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read), time);

    /// <summary>
    /// Notes that entries up to this one are durable (the commit loop calls this); writes the mark
    /// when the journal is <paramref name="idle"/> or the interval has passed.
    /// </summary>
    public void Advance(long sequence, long position, bool idle)
    {
        _pending = (sequence, position);
        long now = _time.GetTimestamp();
        if (!idle && _lastWrite != 0 && _time.GetElapsedTime(_lastWrite, now) < Interval) return;
        _lastWrite = now;
        Write();
    }

    /// <summary>Writes the newest mark now (at close, and after a recovery accepted a shorter log).</summary>
    public void Write()
    {
        if (_pending.Position < 0) return;
        BinaryPrimitives.WriteInt64LittleEndian(_buffer, _pending.Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(_buffer.AsSpan(8), _pending.Position);
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(16), Checksum(_buffer));
        RandomAccess.Write(_file, _buffer, 0);
    }

    private static uint Checksum(ReadOnlySpan<byte> mark) => Crc32C.Of(mark[..16]);

    public void Dispose()
    {
        Write();
        _file.Dispose();
    }
}
