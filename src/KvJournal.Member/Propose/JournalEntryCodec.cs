using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Google.Protobuf;
using KvJournal.Protos.Journal;

namespace KvJournal.Member.Propose;

/// <summary>
/// Frames a <see cref="JournalEntry"/> as journal bytes. Layouts are frozen: entries written by
/// one version are read by every later one.
/// <code>
/// format 2 (written today)
/// +--------+------------------+-----------+------------+----------------------------------+
/// | byte 0 | bytes 1..4       | 5..12     | 13..20     | 21..n                            |
/// | 2      | CRC-32C of 5..n  | member id | request id | JournalEntry, protobuf, ids unset|
/// +--------+------------------+-----------+------------+----------------------------------+
/// format 1 (read only): byte 0 = 1, then the JournalEntry with its ids, no checksum.
/// </code>
/// Integers are little-endian. The checksum tells a damaged entry (the journal's bytes changed:
/// stop the member) from a well-formed one; the ids outside the protobuf let the applier fail the
/// proposer's request deterministically even when the body cannot be parsed.
/// </summary>
public static class JournalEntryCodec
{
    public const byte Format1 = 1;
    public const byte Format2 = 2;
    private const int HeaderBytes = 21;

    /// <summary>
    /// The deepest txn (a txn inside a txn's op, ...; 1 = a plain txn) a request may carry. The wire
    /// parser's recursion limit (protobuf's 100 nested messages, two per txn level) admits 50; the
    /// validator refuses deeper ones from any path, and <see cref="Decode"/> reads every entry that
    /// passes it (etcd has no limit: Go stacks grow, .NET's do not).
    /// </summary>
    public const int MaxTxnDepth = 50;

    // Messages nested in an entry: the entry, two per txn level, an op's request and its fields.
    private const int RecursionLimit = 2 * MaxTxnDepth + 8;

    public static byte[] Encode(JournalEntry entry)
    {
        int length = EncodeRented(entry, out byte[] rented);
        byte[] bytes = rented.AsSpan(0, length).ToArray();
        ArrayPool<byte>.Shared.Return(rented);
        return bytes;
    }

    /// <summary>
    /// Encodes <paramref name="entry"/> into a buffer rented from <see cref="ArrayPool{T}.Shared"/>
    /// and returns its length; the caller returns the buffer once nothing reads it any more.
    /// </summary>
    public static int EncodeRented(JournalEntry entry, out byte[] rented)
    {
        ulong member = entry.MemberId, request = entry.RequestId;
        entry.MemberId = 0;
        entry.RequestId = 0;
        try
        {
            int length = HeaderBytes + entry.CalculateSize();
            rented = ArrayPool<byte>.Shared.Rent(length);
            var bytes = rented.AsSpan(0, length);
            bytes[0] = Format2;
            BinaryPrimitives.WriteUInt64LittleEndian(bytes[5..], member);
            BinaryPrimitives.WriteUInt64LittleEndian(bytes[13..], request);
            entry.WriteTo(bytes[HeaderBytes..]);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes[1..], Crc32C.Of(bytes[5..]));
            return length;
        }
        finally
        {
            entry.MemberId = member;
            entry.RequestId = request;
        }
    }

    public static DecodedEntry Decode(ReadOnlyMemory<byte> bytes)
    {
        var span = bytes.Span;
        if (span.Length == 0) return DecodedEntry.Damaged("empty entry");
        switch (span[0])
        {
            case Format2:
                if (span.Length < HeaderBytes) return DecodedEntry.Damaged($"entry of {span.Length} bytes is shorter than its header");
                uint stored = BinaryPrimitives.ReadUInt32LittleEndian(span[1..]);
                uint computed = Crc32C.Of(span[5..]);
                if (stored != computed) return DecodedEntry.Damaged($"checksum mismatch (stored {stored:x8}, computed {computed:x8})");
                ulong member = BinaryPrimitives.ReadUInt64LittleEndian(span[5..]);
                ulong request = BinaryPrimitives.ReadUInt64LittleEndian(span[13..]);
                if (!TryParse(bytes[HeaderBytes..], out var entry, out string? problem))
                    return new DecodedEntry(EntryStatus.Unreadable, null, member, request, problem);
                entry!.MemberId = member;
                entry.RequestId = request;
                return new DecodedEntry(EntryStatus.Ok, entry, member, request, null);
            case Format1:
                // No checksum: a body that does not parse cannot be told from damage.
                return TryParse(bytes[1..], out var legacy, out string? legacyProblem)
                    ? new DecodedEntry(EntryStatus.Ok, legacy, legacy!.MemberId, legacy.RequestId, null)
                    : DecodedEntry.Damaged($"format 1 entry does not parse: {legacyProblem}");
            default:
                return DecodedEntry.Damaged($"entry of unknown format {span[0]}");
        }
    }

    private static bool TryParse(ReadOnlyMemory<byte> body, out JournalEntry? entry, out string? problem)
    {
        try
        {
            entry = new JournalEntry();
            try
            {
                // Straight from the entry's bytes (fields are copied out: the bytes may be a
                // reader's reused buffer). Only the stream form takes a recursion limit, so an
                // entry nested past the default limit of 100 is parsed again that way, and that
                // answer is the one that counts.
                entry.MergeFrom(body.Span);
            }
            catch (InvalidProtocolBufferException)
            {
                using var stream = MemoryMarshal.TryGetArray(body, out var segment)
                    ? new MemoryStream(segment.Array!, segment.Offset, segment.Count, writable: false)
                    : new MemoryStream(body.ToArray(), writable: false);
                entry = new JournalEntry();
                entry.MergeFrom(CodedInputStream.CreateWithLimits(stream, int.MaxValue, RecursionLimit));
            }
            problem = null;
            return true;
        }
        catch (InvalidProtocolBufferException ex)
        {
            entry = null;
            problem = ex.Message;
            return false;
        }
    }
}

/// <summary>How an entry read back from the journal turned out.</summary>
public enum EntryStatus : byte
{
    /// <summary>Checksum right, body parsed: apply it.</summary>
    Ok,
    /// <summary>Checksum right, body does not parse: fail its request, the same on every member.</summary>
    Unreadable,
    /// <summary>The bytes are not what was appended (checksum, format, length): the member stops.</summary>
    Damaged,
}

/// <summary>An entry read back from the journal, with its proposer's ids whenever the frame is sound.</summary>
public readonly record struct DecodedEntry(EntryStatus Status, JournalEntry? Entry, ulong MemberId, ulong RequestId, string? Problem)
{
    public static DecodedEntry Damaged(string problem) => new(EntryStatus.Damaged, null, 0, 0, problem);
}
