using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Lease;
using KvJournal.Storage.Mvcc;
using Xunit;

namespace KvJournal.Unit.Tests;

/// <summary>
/// Exactly-once apply: a retried append can leave an entry twice in the journal; the second copy
/// (same proposer and request id) changes nothing, while the same request from another member,
/// or another request from the same member, applies.
/// </summary>
public sealed class RepeatedEntryTests
{
    private static KvApplier NewApplier(MvccStore store) => AppliedState.New(store).Applier;

    private static JournalEntry Put(ulong member, ulong request, string value) => new()
    {
        MemberId = member,
        RequestId = request,
        Put = new PutRequest { Key = ByteString.CopyFromUtf8("k"), Value = ByteString.CopyFromUtf8(value) },
    };

    [Fact]
    public void ASecondCopyOfAnEntryIsSkipped()
    {
        var store = new MvccStore();
        var applier = NewApplier(store);
        Assert.Equal(EtcdError.None, applier.Apply(Put(1, 100, "a")).Error);
        Assert.Equal(2, store.CurrentRevision);
        Assert.Equal(EtcdError.RepeatedEntry, applier.Apply(Put(1, 100, "a")).Error);
        Assert.Equal(2, store.CurrentRevision);
        Assert.Equal(EtcdError.None, applier.Apply(Put(2, 100, "b")).Error); // another member's request 100
        Assert.Equal(EtcdError.None, applier.Apply(Put(1, 101, "c")).Error);
        Assert.Equal(4, store.CurrentRevision);
    }

    [Fact]
    public void TheWindowForgetsTheOldestRequestsFirst()
    {
        var seen = new AppliedRequests();
        for (ulong i = 1; i <= AppliedRequests.Window; i++) Assert.True(seen.TryAdd(1, i));
        Assert.False(seen.TryAdd(1, 1));
        Assert.True(seen.TryAdd(1, AppliedRequests.Window + 1)); // pushes request 1 out
        Assert.True(seen.TryAdd(1, 1));
        Assert.False(seen.TryAdd(1, AppliedRequests.Window));
    }
}
