using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Member.Propose;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// Txns nested inside txns: every depth the wire admits is applied as etcd applies it, a deeper one
/// is refused before anything is proposed, and neither stops the member or survives a restart as
/// an entry the member cannot read back (a 50-deep txn once stopped every member for good).
/// </summary>
public sealed class NestedTxnTests : IAsyncLifetime
{
    private KvJournalProcess _kvj = null!;
    private ReferenceEtcdProcess _etcd = null!;

    public async Task InitializeAsync()
    {
        _kvj = await KvJournalProcess.StartAsync(Paths.NewTempDir("kvj-nested"));
        _etcd = await ReferenceEtcdProcess.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _kvj.DisposeAsync();
        Paths.DeleteDir(_kvj.DataDir);
        await _etcd.DisposeAsync();
    }

    /// <summary>A txn <paramref name="depth"/> levels deep (1 = a plain txn) whose innermost level puts the key.</summary>
    private static TxnRequest Nested(int depth, string key)
    {
        var txn = new TxnRequest { Success = { new RequestOp { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFromUtf8($"depth {depth}") } } } };
        for (int level = 1; level < depth; level++) txn = new TxnRequest { Success = { new RequestOp { RequestTxn = txn } } };
        return txn;
    }

    // Grpc.Net.Client parses responses with protobuf's recursion limit (100 nested messages), which
    // a 50-deep TxnResponse passes: the answer is read as bytes and parsed here with room to spare.
    private static readonly Method<TxnRequest, byte[]> RawTxn = new(MethodType.Unary, "etcdserverpb.KV", "Txn",
        Marshallers.Create<TxnRequest>(r => r.ToByteArray(), TxnRequest.Parser.ParseFrom),
        Marshallers.Create<byte[]>(b => b, b => b));

    private static async Task<string> TxnAsync(ServerProcess server, TxnRequest request)
    {
        try
        {
            byte[] bytes = await server.Channel.CreateCallInvoker().AsyncUnaryCall(RawTxn, null, new CallOptions(), request);
            var response = new TxnResponse();
            response.MergeFrom(CodedInputStream.CreateWithLimits(new MemoryStream(bytes), int.MaxValue, 1000));
            (response.Header.ClusterId, response.Header.MemberId, response.Header.RaftTerm) = (0, 0, 0); // differ between two servers
            return response.ToString();
        }
        catch (RpcException ex)
        {
            return $"error {ex.StatusCode}: {ex.Status.Detail}";
        }
    }

    [Fact]
    public async Task EveryAdmittedDepthAppliesAsOnEtcdAndSurvivesARestart()
    {
        var depths = new[] { 1, 2, 10, 49, JournalEntryCodec.MaxTxnDepth };
        foreach (int depth in depths)
        {
            string theirs = await TxnAsync(_etcd, Nested(depth, $"k{depth}"));
            Assert.StartsWith("{", theirs, StringComparison.Ordinal);
            Assert.Equal(theirs, await TxnAsync(_kvj, Nested(depth, $"k{depth}")));
        }

        // The member reads its own journal back after a kill -9: every entry decodes and applies.
        await _kvj.KillAsync();
        await using var restarted = await KvJournalProcess.StartAsync(_kvj.DataDir);
        var all = await restarted.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("k"), RangeEnd = ByteString.CopyFromUtf8("l") });
        Assert.Equal(depths.Length, all.Count);
        Assert.Equal(depths.Length + 1, all.Header.Revision);
        var put = await restarted.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("after"), Value = ByteString.CopyFromUtf8("v") });
        Assert.Equal(depths.Length + 2, put.Header.Revision);
    }

    [Fact]
    public async Task ADeeperTxnIsRefusedAndTheMemberGoesOn()
    {
        foreach (int depth in new[] { JournalEntryCodec.MaxTxnDepth + 1, 200, 5000 })
        {
            // Refused by the wire's protobuf parser (its recursion limit) before it reaches the
            // validator, with grpc-go's error for a request that does not parse.
            string ours = await TxnAsync(_kvj, Nested(depth, "deep"));
            Assert.StartsWith("error Internal: grpc: error unmarshalling request: ", ours, StringComparison.Ordinal);
        }
        var range = await _kvj.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("deep") });
        Assert.Equal(0, range.Count);
        var put = await _kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("after"), Value = ByteString.CopyFromUtf8("v") });
        Assert.Equal(2, put.Header.Revision);
    }
}
