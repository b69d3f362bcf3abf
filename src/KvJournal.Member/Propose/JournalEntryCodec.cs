using Google.Protobuf;
using KvJournal.Protos.Journal;

namespace KvJournal.Member.Propose;

/// <summary>
/// Frames a <see cref="JournalEntry"/> as journal bytes. The layout is frozen: entries written by
/// one version are read by every later one.
/// <code>
/// +---------+-------------------------------------------+
/// | byte 0  | bytes 1..n                                |
/// | format  | JournalEntry, protobuf (protos/kvjournal) |
/// +---------+-------------------------------------------+
/// </code>
/// Format 1 is the only one so far; a reader refuses any other rather than guess.
/// </summary>
public static class JournalEntryCodec
{
    public const byte Format1 = 1;

    public static byte[] Encode(JournalEntry entry)
    {
        int size = entry.CalculateSize();
        var bytes = new byte[1 + size];
        bytes[0] = Format1;
        entry.WriteTo(bytes.AsSpan(1));
        return bytes;
    }

    public static JournalEntry Decode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 0 || bytes[0] != Format1)
            throw new InvalidDataException($"journal entry of unknown format {(bytes.Length == 0 ? "(empty)" : bytes[0].ToString())}");
        return JournalEntry.Parser.ParseFrom(bytes[1..]);
    }
}
