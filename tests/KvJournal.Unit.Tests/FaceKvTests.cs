using Etcdserverpb;
using KvJournal.Member.Face;
using KvJournal.Storage.Apply;
using Mvccpb;
using Xunit;
using static KvJournal.Unit.Tests.FaceHost;

namespace KvJournal.Unit.Tests;

/// <summary>KV, txn and watch behaviour through the shard's face, in-process over a real embedded journal.</summary>
public sealed class FaceKvTests : IAsyncLifetime
{
    private FaceHost _host = null!;
    private ShardServer Face => _host.Face;
    private static readonly CallerIdentity Nobody = CallerIdentity.None;
    private static readonly CancellationToken None = CancellationToken.None;

    public async Task InitializeAsync() => _host = await StartAsync();

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact]
    public async Task ATxnComparingModRevisionTakesTheBranchItsCompareSelects()
    {
        var put = await Face.PutAsync(new PutRequest { Key = B("k"), Value = B("1") }, Nobody, None);
        TxnRequest Update(long expected) => new()
        {
            Compare = { new Compare { Key = B("k"), Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = expected } },
            Success = { new RequestOp { RequestPut = new PutRequest { Key = B("k"), Value = B("2") } } },
            Failure = { new RequestOp { RequestRange = new RangeRequest { Key = B("k") } } },
        };
        var first = await Face.TxnAsync(Update(put.Header.Revision), Nobody, None);
        Assert.True(first.Succeeded);
        Assert.Equal(put.Header.Revision + 1, first.Header.Revision);
        // The same update again is stale: the failure branch reads the current value, and nothing is written.
        var stale = await Face.TxnAsync(Update(put.Header.Revision), Nobody, None);
        Assert.False(stale.Succeeded);
        Assert.Equal("2", stale.Responses[0].ResponseRange.Kvs[0].Value.ToStringUtf8());
        Assert.Equal(first.Header.Revision, stale.Header.Revision);
        Assert.Equal(1UL, first.Header.MemberId);
    }

    [Fact]
    public async Task InvalidRequestsAreRefusedBeforeAnythingIsProposed()
    {
        long before = _host.Shard.AppliedPosition;
        Assert.Equal(EtcdError.EmptyKey, (await Assert.ThrowsAsync<EtcdException>(() => Face.PutAsync(new PutRequest { Value = B("v") }, Nobody, None))).Error);
        var twice = new TxnRequest
        {
            Success =
            {
                new RequestOp { RequestPut = new PutRequest { Key = B("a"), Value = B("1") } },
                new RequestOp { RequestPut = new PutRequest { Key = B("a"), Value = B("2") } },
            },
        };
        Assert.Equal(EtcdError.DuplicateKey, (await Assert.ThrowsAsync<EtcdException>(() => Face.TxnAsync(twice, Nobody, None))).Error);
        Assert.Equal(before, _host.Shard.AppliedPosition);
    }

    [Fact]
    public async Task AWatchSeesPutsAndDeletesFromItsStartRevisionWithPrevKv()
    {
        var first = await Face.PutAsync(new PutRequest { Key = B("w/a"), Value = B("1") }, Nobody, None);
        await Face.PutAsync(new PutRequest { Key = B("w/a"), Value = B("2") }, Nobody, None);
        await Face.DeleteRangeAsync(new DeleteRangeRequest { Key = B("w/a") }, Nobody, None);

        await using var watch = FaceWatch.Open(Face, Nobody);
        watch.Send(new WatchRequest { CreateRequest = new WatchCreateRequest { Key = B("w/"), RangeEnd = B("w0"), StartRevision = first.Header.Revision, PrevKv = true } });
        Assert.True((await watch.NextAsync()).Created);
        var events = new List<Event>();
        while (events.Count < 3)
            foreach (var bytes in (await watch.NextAsync()).Events) events.Add(Event.Parser.ParseFrom(bytes));
        Assert.Equal([Event.Types.EventType.Put, Event.Types.EventType.Put, Event.Types.EventType.Delete], events.Select(e => e.Type));
        Assert.Equal("1", events[1].PrevKv.Value.ToStringUtf8());
        Assert.Equal("2", events[2].PrevKv.Value.ToStringUtf8());
    }
}
