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
    private const string GoldenPutHex = "0108071009220a0a03666f6f1203626172";

    [Fact]
    public void PutEntryEncodesToFrozenBytes()
    {
        var entry = new JournalEntry { MemberId = 7, RequestId = 9, Put = new PutRequest { Key = ByteString.CopyFromUtf8("foo"), Value = ByteString.CopyFromUtf8("bar") } };
        Assert.Equal(GoldenPutHex, Convert.ToHexStringLower(JournalEntryCodec.Encode(entry)));
    }

    [Fact]
    public void FrozenBytesDecodeToTheSameRequest()
    {
        var entry = JournalEntryCodec.Decode(Convert.FromHexString(GoldenPutHex));
        Assert.Equal(JournalEntry.BodyOneofCase.Put, entry.BodyCase);
        Assert.Equal((7UL, 9UL, "foo", "bar"), (entry.MemberId, entry.RequestId, entry.Put.Key.ToStringUtf8(), entry.Put.Value.ToStringUtf8()));
    }

    [Fact]
    public void UnknownFormatIsRefusedNotGuessed()
    {
        var bytes = Convert.FromHexString(GoldenPutHex);
        bytes[0] = 2;
        Assert.Throws<InvalidDataException>(() => JournalEntryCodec.Decode(bytes));
    }
}
