using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// Bad input gets etcd's exact answer: each request goes to kvjournal and to the reference etcd,
/// and both must fail with the expected gRPC code and message.
/// </summary>
public sealed class KvErrorTests : IAsyncLifetime
{
    private KvJournalProcess _kvj = null!;
    private ReferenceEtcdProcess _etcd = null!;

    public async Task InitializeAsync()
    {
        _kvj = await KvJournalProcess.StartAsync();
        _etcd = await ReferenceEtcdProcess.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _kvj.DisposeAsync();
        await _etcd.DisposeAsync();
    }

    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private async Task BothFail<T>(Func<KV.KVClient, Task<T>> call, StatusCode code, string message) where T : IMessage
    {
        var ours = await Responses.CaptureAsync(() => call(_kvj.Kv));
        var theirs = await Responses.CaptureAsync(() => call(_etcd.Kv));
        Assert.Equal((code, message), (theirs.Code, theirs.Detail));
        Assert.Equal((code, message), (ours.Code, ours.Detail));
    }

    [Fact]
    public async Task EmptyKeyIsRefusedByEveryRequest()
    {
        const string msg = "etcdserver: key is not provided";
        await BothFail(kv => kv.RangeAsync(new RangeRequest()).ResponseAsync, StatusCode.InvalidArgument, msg);
        await BothFail(kv => kv.PutAsync(new PutRequest { Value = B("v") }).ResponseAsync, StatusCode.InvalidArgument, msg);
        await BothFail(kv => kv.DeleteRangeAsync(new DeleteRangeRequest()).ResponseAsync, StatusCode.InvalidArgument, msg);
        await BothFail(kv => kv.TxnAsync(new TxnRequest { Compare = { new Compare { Target = Compare.Types.CompareTarget.Version } } }).ResponseAsync, StatusCode.InvalidArgument, msg);
        await BothFail(kv => kv.TxnAsync(new TxnRequest { Success = { new RequestOp { RequestPut = new PutRequest() } } }).ResponseAsync, StatusCode.InvalidArgument, msg);
    }

    [Fact]
    public async Task PutFlagsNeedTheirPreconditions()
    {
        await BothFail(kv => kv.PutAsync(new PutRequest { Key = B("k"), Value = B("v"), IgnoreValue = true }).ResponseAsync,
            StatusCode.InvalidArgument, "etcdserver: value is provided");
        await BothFail(kv => kv.PutAsync(new PutRequest { Key = B("k"), Lease = 7, IgnoreLease = true }).ResponseAsync,
            StatusCode.InvalidArgument, "etcdserver: lease is provided");
        await BothFail(kv => kv.PutAsync(new PutRequest { Key = B("missing"), IgnoreValue = true }).ResponseAsync,
            StatusCode.InvalidArgument, "etcdserver: key not found");
        await BothFail(kv => kv.PutAsync(new PutRequest { Key = B("k"), Value = B("v"), Lease = 12345 }).ResponseAsync,
            StatusCode.NotFound, "etcdserver: requested lease not found");
    }

    [Fact]
    public async Task TxnLimitsAndDuplicateKeys()
    {
        var tooMany = new TxnRequest();
        for (int i = 0; i < 129; i++) tooMany.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = B($"k{i}") } });
        await BothFail(kv => kv.TxnAsync(tooMany).ResponseAsync, StatusCode.InvalidArgument, "etcdserver: too many operations in txn request");

        const string dup = "etcdserver: duplicate key given in txn request";
        await BothFail(kv => kv.TxnAsync(new TxnRequest
        {
            Success = { new RequestOp { RequestPut = new PutRequest { Key = B("a") } }, new RequestOp { RequestPut = new PutRequest { Key = B("a") } } },
        }).ResponseAsync, StatusCode.InvalidArgument, dup);
        await BothFail(kv => kv.TxnAsync(new TxnRequest
        {
            Failure = { new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = B("a"), RangeEnd = B("c") } }, new RequestOp { RequestPut = new PutRequest { Key = B("b") } } },
        }).ResponseAsync, StatusCode.InvalidArgument, dup);
        await BothFail(kv => kv.TxnAsync(new TxnRequest
        {
            Success =
            {
                new RequestOp { RequestPut = new PutRequest { Key = B("x") } },
                new RequestOp { RequestTxn = new TxnRequest { Failure = { new RequestOp { RequestPut = new PutRequest { Key = B("x") } } } } },
            },
        }).ResponseAsync, StatusCode.InvalidArgument, dup);
        await BothFail(kv => kv.TxnAsync(new TxnRequest { Success = { new RequestOp() } }).ResponseAsync, StatusCode.InvalidArgument, "etcdserver: key not found");
    }

    [Fact]
    public async Task TxnThatCannotFinishWritesNothing()
    {
        // A "\0" range end escapes etcd's duplicate-key check, so this txn deletes p/4 and then puts
        // it with ignore_lease, which needs the key. etcd 3.5 panics on it (the process exits);
        // KvJournal refuses the whole txn with "key not found" and leaves the store untouched.
        await _kvj.Kv.PutAsync(new PutRequest { Key = B("p/4"), Value = B("v") });
        var txn = new TxnRequest
        {
            Success =
            {
                new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = B("c"), RangeEnd = ByteString.CopyFrom(0) } },
                new RequestOp { RequestPut = new PutRequest { Key = B("p/4"), Value = B("w"), IgnoreLease = true } },
            },
        };
        var outcome = await Responses.CaptureAsync(() => _kvj.Kv.TxnAsync(txn).ResponseAsync);
        Assert.Equal((StatusCode.InvalidArgument, "etcdserver: key not found"), (outcome.Code, outcome.Detail));
        var after = await _kvj.Kv.RangeAsync(new RangeRequest { Key = B("p/4") });
        Assert.Equal(2, after.Header.Revision);
        Assert.Equal("v", after.Kvs.Single().Value.ToStringUtf8());
        Assert.Equal(2, after.Kvs.Single().ModRevision);
    }

    [Fact]
    public async Task RequestTooLarge()
    {
        var big = ByteString.CopyFrom(new byte[1600 * 1024]);
        await BothFail(kv => kv.PutAsync(new PutRequest { Key = B("big"), Value = big }).ResponseAsync,
            StatusCode.InvalidArgument, "etcdserver: request is too large");
        // Nothing was written: the revision did not move.
        var head = await _kvj.Kv.RangeAsync(new RangeRequest { Key = B("big") });
        Assert.Equal(1, head.Header.Revision);
        Assert.Empty(head.Kvs);
    }

    [Fact]
    public async Task RevisionsOutsideHistory()
    {
        foreach (var kv in new[] { _kvj.Kv, _etcd.Kv })
        {
            for (int i = 0; i < 5; i++) await kv.PutAsync(new PutRequest { Key = B("r"), Value = B($"v{i}") });
            await kv.CompactAsync(new CompactionRequest { Revision = 4 });
        }
        const string compacted = "etcdserver: mvcc: required revision has been compacted";
        const string future = "etcdserver: mvcc: required revision is a future revision";
        await BothFail(kv => kv.RangeAsync(new RangeRequest { Key = B("r"), Revision = 3 }).ResponseAsync, StatusCode.OutOfRange, compacted);
        await BothFail(kv => kv.RangeAsync(new RangeRequest { Key = B("r"), Revision = 7 }).ResponseAsync, StatusCode.OutOfRange, future);
        await BothFail(kv => kv.CompactAsync(new CompactionRequest { Revision = 4 }).ResponseAsync, StatusCode.OutOfRange, compacted);
        await BothFail(kv => kv.CompactAsync(new CompactionRequest { Revision = 9 }).ResponseAsync, StatusCode.OutOfRange, future);
        await BothFail(kv => kv.TxnAsync(new TxnRequest { Success = { new RequestOp { RequestRange = new RangeRequest { Key = B("r"), Revision = 2 } } } }).ResponseAsync,
            StatusCode.OutOfRange, compacted);
        // At the compaction revision itself history is still readable.
        var at = await _kvj.Kv.RangeAsync(new RangeRequest { Key = B("r"), Revision = 4 });
        Assert.Equal("v2", at.Kvs.Single().Value.ToStringUtf8());
    }
}
