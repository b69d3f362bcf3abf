using KvJournal.Storage.Apply;
using KvJournal.Storage.Lease;
using KvJournal.Storage.Mvcc;

namespace KvJournal.Unit.Tests;

/// <summary>A store, its lease table and an applier over them, wired as a member wires them (without auth).</summary>
internal sealed record AppliedState(MvccStore Store, Lessor Lessor, KvApplier Applier)
{
    public static AppliedState New(MvccStore? store = null)
    {
        store ??= new MvccStore();
        var lessor = new Lessor();
        store.LeaseTracker = lessor;
        return new AppliedState(store, lessor, new KvApplier(store, new TxnExecutor(lessor), new LeaseExecutor(store, lessor)));
    }
}
