using System.Buffers.Binary;

namespace KvJournal.Journal.Nats;

/// <summary>
/// One JetStream message of the replicated journal: the entries of one group commit, with a
/// checksum over all of them, so a message damaged on a replica is refused, never applied.
/// <code>
/// +--------+---------+-----------------+------------------------------------------+
/// | byte 0 | 1..4    | 5..8            | 9..n                                     |
/// | 1      | count   | CRC-32C of 9..n | per entry: length (4 bytes), entry bytes |
/// +--------+---------+-----------------+------------------------------------------+
/// </code>
/// Little-endian. Positions: (stream sequence &lt;&lt; 16) | index in the message, where the last
/// entry of a message takes index 0xFFFF, so "everything up to message N" is one position.
/// </summary>
internal static class MessageFrame
{
    public const byte Version1 = 1;
    public const int HeaderBytes = 9;
    public const int IndexBits = 16;
    public const int MaxEntries = 0xFFFF; // indexes 0..0xFFFE, and 0xFFFF for the last
    private const long LastIndex = 0xFFFF;

    public static long Position(ulong sequence, int index, int count) =>
        ((long)sequence << IndexBits) | (index == count - 1 ? LastIndex : index);

    /// <summary>The position after which every entry of message <paramref name="sequence"/> has been read.</summary>
    public static long EndOf(ulong sequence) => ((long)sequence << IndexBits) | LastIndex;

    public static ulong SequenceOf(long position) => (ulong)(position >> IndexBits);

    public static int Size(IReadOnlyList<ReadOnlyMemory<byte>> entries)
    {
        int size = HeaderBytes;
        foreach (var e in entries) size += 4 + e.Length;
        return size;
    }

    public static byte[] Encode(IReadOnlyList<ReadOnlyMemory<byte>> entries)
    {
        var bytes = new byte[Size(entries)];
        bytes[0] = Version1;
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(1), entries.Count);
        int at = HeaderBytes;
        foreach (var e in entries)
        {
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at), e.Length);
            e.Span.CopyTo(bytes.AsSpan(at + 4));
            at += 4 + e.Length;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(5), Crc32C.Of(bytes.AsSpan(HeaderBytes)));
        return bytes;
    }

    /// <summary>The entries of a message, or the reason it is damaged.</summary>
    public static List<ReadOnlyMemory<byte>>? Decode(ReadOnlyMemory<byte> message, out string? problem)
    {
        var span = message.Span;
        problem = null;
        if (span.Length < HeaderBytes || span[0] != Version1)
        {
            problem = span.Length < HeaderBytes ? $"message of {span.Length} bytes is shorter than its header" : $"message of unknown version {span[0]}";
            return null;
        }
        int count = BinaryPrimitives.ReadInt32LittleEndian(span[1..]);
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(span[5..]);
        uint computed = Crc32C.Of(span[HeaderBytes..]);
        if (stored != computed)
        {
            problem = $"checksum mismatch (stored {stored:x8}, computed {computed:x8})";
            return null;
        }
        var entries = new List<ReadOnlyMemory<byte>>(count);
        int at = HeaderBytes;
        for (int i = 0; i < count; i++)
        {
            int length = at + 4 <= span.Length ? BinaryPrimitives.ReadInt32LittleEndian(span[at..]) : -1;
            if (length < 0 || at + 4 + length > span.Length)
            {
                problem = $"entry {i} of {count} runs past the message";
                return null;
            }
            entries.Add(message.Slice(at + 4, length));
            at += 4 + length;
        }
        return entries;
    }
}
