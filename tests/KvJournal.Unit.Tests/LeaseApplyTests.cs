using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Lease;
using KvJournal.Storage.Mvcc;
using Xunit;

namespace KvJournal.Unit.Tests;

/// <summary>
/// Lease entries applied to a store: deadlines come from the entries only, and an expiry that
/// lost a race with a renewal, or that a second member proposed too, changes nothing.
/// </summary>
public sealed class LeaseApplyTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private static (MvccStore Store, Lessor Lessor, KvApplier Applier) NewState()
    {
        var state = AppliedState.New();
        return (state.Store, state.Lessor, state.Applier);
    }

    private static ApplyResult Apply(KvApplier applier, JournalEntry entry) => applier.Apply(entry);

    private static JournalEntry Grant(long id, long ttl, long at) => new() { LeaseGrant = new LeaseGrant { Id = id, TtlSeconds = ttl, AtUnixMs = at } };

    private static JournalEntry Expire(long id, long at) => new() { LeaseExpire = new LeaseExpire { Id = id, AtUnixMs = at } };

    private static JournalEntry Put(string key, long lease) => new() { Put = new PutRequest { Key = B(key), Value = B("v"), Lease = lease } };

    [Fact]
    public void ExpiryRevokesOnlyPastTheDeadlineAndOnlyOnce()
    {
        var (store, lessor, applier) = NewState();
        Assert.Equal(EtcdError.None, Apply(applier, Grant(7, 10, at: 1_000)).Error);    // deadline 11,000
        Apply(applier, Put("b", 7));
        Apply(applier, Put("a", 7));
        long before = store.CurrentRevision;

        Apply(applier, Expire(7, at: 10_999));                                         // not yet due: nothing
        Assert.Equal(before, store.CurrentRevision);
        Assert.NotNull(lessor.Get(7));

        Apply(applier, Expire(7, at: 11_000));                                         // due: both keys in one revision
        Assert.Equal(before + 1, store.CurrentRevision);
        Assert.Null(lessor.Get(7));
        Assert.Equal(0, CountLive(store));

        Apply(applier, Expire(7, at: 11_500));                                         // a second member's expiry: no-op
        Assert.Equal(before + 1, store.CurrentRevision);
    }

    [Fact]
    public void RenewalAppliedBeforeAnExpiryWins()
    {
        var (_, lessor, applier) = NewState();
        Apply(applier, Grant(7, 10, at: 0));                                             // deadline 10,000
        var renewed = Apply(applier, new JournalEntry { LeaseRenew = new LeaseRenew { Ids = { 7, 8 }, AtUnixMs = 9_000 } });
        Assert.Equal([10L, 0L], ((LeaseRenewResult)renewed.Response!).Ttls);             // 8 does not exist: TTL 0
        Apply(applier, Expire(7, at: 10_500));                                          // proposed on the old deadline
        Assert.Equal(19_000, lessor.Get(7)!.ExpiresAtUnixMs);
    }

    [Fact]
    public void ALeasePastItsDeadlineCannotBeRenewed()
    {
        var (_, lessor, applier) = NewState();
        Apply(applier, Grant(7, 5, at: 0));
        var late = Apply(applier, new JournalEntry { LeaseRenew = new LeaseRenew { Ids = { 7 }, AtUnixMs = 5_000 } });
        Assert.Equal([0L], ((LeaseRenewResult)late.Response!).Ttls);
        Assert.Equal(5_000, lessor.Get(7)!.ExpiresAtUnixMs);
    }

    [Fact]
    public void GrantAppliesEtcdsMinimumAndRefusesDuplicatesAndHugeTtls()
    {
        var (_, _, applier) = NewState();
        Assert.Equal(2, ((LeaseGrantResponse)Apply(applier, Grant(1, 1, at: 0)).Response!).TTL);
        Assert.Equal(EtcdError.LeaseExists, Apply(applier, Grant(1, 60, at: 0)).Error);
        Assert.Equal(EtcdError.LeaseTtlTooLarge, Apply(applier, Grant(2, Lessor.MaxTtlSeconds + 1, at: 0)).Error);
    }

    [Fact]
    public void PutWithoutLeaseDetachesAndRevokeDeletesOnlyAttachedKeys()
    {
        var (store, lessor, applier) = NewState();
        Apply(applier, Grant(7, 60, at: 0));
        Apply(applier, Put("a", 7));
        Apply(applier, Put("b", 7));
        Apply(applier, Put("b", 0));                                                   // detached
        Assert.Equal([B("a")], lessor.Get(7)!.AttachedKeys);
        Apply(applier, new JournalEntry { LeaseRevoke = new LeaseRevoke { Id = 7 } });
        Assert.Equal(1, CountLive(store));                                             // b survives
    }

    [Fact]
    public void ExpiredListsTheEarliestDeadlinesFirstUpToTheBound()
    {
        var (_, lessor, applier) = NewState();
        for (int i = 1; i <= 50; i++) Apply(applier, Grant(i, 10, at: (50 - i) * 1_000L)); // lease 50 is due first
        var due = lessor.Expired(nowUnixMs: 30_000, max: 5);
        Assert.Equal([50L, 49L, 48L, 47L, 46L], due);
        Assert.Equal(21, lessor.Expired(nowUnixMs: 30_000, max: 100).Count);
    }

    private static long CountLive(MvccStore store)
    {
        store.Begin(writable: false).Range(KeyRange.FromRequest(B("\0"), ByteString.CopyFrom(0)), 0, 0, true, false, null, out long count);
        return count;
    }
}
