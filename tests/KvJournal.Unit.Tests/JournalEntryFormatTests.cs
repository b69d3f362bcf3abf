using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Member.Propose;
using KvJournal.Protos.Journal;
using Xunit;

namespace KvJournal.Unit.Tests;

/// <summary>
/// Entries on disk outlive the code that wrote them: these exact bytes must keep decoding to the
/// same request. If this test fails, the journal format changed — add a new format byte instead.
/// </summary>
public sealed class JournalEntryFormatTests
{
    // Format 1: no checksum, the ids inside the protobuf. Still read, no longer written.
    private const string GoldenFormat1PutHex = "0108071009220a0a03666f6f1203626172";

    private static JournalEntry FooBar() => new() { MemberId = 7, RequestId = 9, Put = new PutRequest { Key = ByteString.CopyFromUtf8("foo"), Value = ByteString.CopyFromUtf8("bar") } };

    [Fact]
    public void PutEntryEncodesToFrozenBytes()
    {
        Assert.Equal(GoldenFormat2PutHex, Convert.ToHexStringLower(JournalEntryCodec.Encode(FooBar())));
    }

    // Format 2: format byte, CRC-32C, member id and request id (little-endian), then the body.
    private const string GoldenFormat2PutHex = "02" + "8f629e2e" + "0700000000000000" + "0900000000000000" + "220a0a03666f6f1203626172";

    [Theory]
    [InlineData(GoldenFormat1PutHex)]
    [InlineData(GoldenFormat2PutHex)]
    public void FrozenBytesDecodeToTheSameRequest(string hex)
    {
        var decoded = JournalEntryCodec.Decode(Convert.FromHexString(hex));
        Assert.Equal(EntryStatus.Ok, decoded.Status);
        var entry = decoded.Entry!;
        Assert.Equal(JournalEntry.BodyOneofCase.Put, entry.BodyCase);
        Assert.Equal((7UL, 9UL, "foo", "bar"), (entry.MemberId, entry.RequestId, entry.Put.Key.ToStringUtf8(), entry.Put.Value.ToStringUtf8()));
        Assert.Equal((7UL, 9UL), (decoded.MemberId, decoded.RequestId));
    }

    [Fact]
    public void EncodingLeavesTheEntryAsItWas()
    {
        var entry = FooBar();
        JournalEntryCodec.Encode(entry);
        Assert.Equal(FooBar(), entry);
    }

    [Fact]
    public void UnknownFormatIsDamageNotAGuess()
    {
        var bytes = Convert.FromHexString(GoldenFormat2PutHex);
        bytes[0] = 3;
        Assert.Equal(EntryStatus.Damaged, JournalEntryCodec.Decode(bytes).Status);
        Assert.Equal(EntryStatus.Damaged, JournalEntryCodec.Decode(Array.Empty<byte>()).Status);
        Assert.Equal(EntryStatus.Damaged, JournalEntryCodec.Decode(bytes.AsMemory(0, 20)).Status);
    }

    [Fact]
    public void EveryFlippedBitOfAnEntryIsCaughtByItsChecksum()
    {
        var good = JournalEntryCodec.Encode(FooBar());
        for (int i = 1; i < good.Length; i++)
        {
            for (int bit = 0; bit < 8; bit++)
            {
                var bad = (byte[])good.Clone();
                bad[i] ^= (byte)(1 << bit);
                var decoded = JournalEntryCodec.Decode(bad);
                Assert.True(decoded.Status == EntryStatus.Damaged, $"byte {i} bit {bit}: {decoded.Status}");
            }
        }
    }

    [Fact]
    public void ASoundFrameWhoseBodyDoesNotParseKeepsItsIds()
    {
        // A body of a field with a truncated length: the checksum is right, the protobuf is not.
        var entry = JournalEntryCodec.Encode(new JournalEntry { MemberId = 5, RequestId = 6 });
        var bytes = new byte[entry.Length + 2];
        entry.CopyTo(bytes, 0);
        bytes[^2] = 0x22; // field 4 (put), length-delimited
        bytes[^1] = 0x7f; // 127 bytes that are not there
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(1), KvJournal.Crc32C.Of(bytes.AsSpan(5)));
        var decoded = JournalEntryCodec.Decode(bytes);
        Assert.Equal((EntryStatus.Unreadable, 5UL, 6UL), (decoded.Status, decoded.MemberId, decoded.RequestId));
    }
}
