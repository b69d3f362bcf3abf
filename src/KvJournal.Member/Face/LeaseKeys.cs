using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Storage.Apply;
using Mvccpb;

namespace KvJournal.Member.Face;

public sealed partial class ShardServer
{
    /// <summary>
    /// The building blocks etcd's lock and election recipes (client/v3/concurrency) share: a key per
    /// lease under a prefix, queued by creation revision; the holder is the oldest key. Run inside the
    /// member, against the shard, with the caller's identity, so they behave as etcd's own servers that
    /// run the same recipes through an in-process client.
    /// </summary>
    private sealed class LeaseKeys(ShardServer face, string user)
    {
        /// <summary>A lease that a recipe given lease 0 holds its key with (etcd's default session TTL).</summary>
        private const long SessionTtlSeconds = 60;

        /// <summary>The key a session holds under <paramref name="prefix"/>: prefix + the lease id in hex, as Go's %x.</summary>
        public static ByteString KeyFor(ByteString prefix, long lease) =>
            ByteString.CopyFrom([.. prefix.Span, .. System.Text.Encoding.ASCII.GetBytes(lease.ToString("x"))]);

        /// <summary>"name/", the prefix every contender of one lock or election writes under.</summary>
        public static ByteString PrefixOf(ByteString name) => ByteString.CopyFrom([.. name.Span, (byte)'/']);

        /// <summary>The lease to hold a key with: the caller's, or a fresh 60 s one nobody keeps alive (etcd's orphaned session).</summary>
        public async Task<long> LeaseOrGrantAsync(long lease, CancellationToken cancellationToken) =>
            lease != 0 ? lease : (await face.GrantAsync(user, 0, SessionTtlSeconds, cancellationToken).ConfigureAwait(false)).ID;

        /// <summary>Proposes a write txn as the caller.</summary>
        public Task<TxnResponse> TxnAsync(TxnRequest txn, CancellationToken cancellationToken) => face.WriteTxnAsync(user, txn, cancellationToken);

        /// <summary>If <paramref name="key"/> does not exist, puts it with the value and lease; else reads it. Then <paramref name="then"/>.</summary>
        public static TxnRequest CreateOrGet(ByteString key, ByteString value, long lease, params RequestOp[] then)
        {
            var txn = new TxnRequest
            {
                Compare = { new Compare { Key = key, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 } },
                Success = { new RequestOp { RequestPut = new PutRequest { Key = key, Value = value, Lease = lease } } },
                Failure = { new RequestOp { RequestRange = new RangeRequest { Key = key } } },
            };
            foreach (var op in then)
            {
                txn.Success.Add(op);
                txn.Failure.Add(op.Clone());
            }
            return txn;
        }

        /// <summary>A range op for the oldest key under <paramref name="prefix"/> (etcd's WithFirstCreate).</summary>
        public static RequestOp FirstCreatedOp(ByteString prefix) => new()
        {
            RequestRange = new RangeRequest
            {
                Key = prefix,
                RangeEnd = PrefixEnd(prefix),
                Limit = 1,
                SortTarget = RangeRequest.Types.SortTarget.Create,
                SortOrder = RangeRequest.Types.SortOrder.Ascend,
            },
        };

        /// <summary>The oldest key under <paramref name="prefix"/> now, as the caller may read it, with the header of that read.</summary>
        public (KeyValue? Kv, ResponseHeader Header) FirstCreated(ByteString prefix) => Range(FirstCreatedOp(prefix).RequestRange);

        /// <summary>One key, read now.</summary>
        public (KeyValue? Kv, ResponseHeader Header) Get(ByteString key) => Range(new RangeRequest { Key = key });

        /// <summary>
        /// Waits until no key under <paramref name="prefix"/> created at or before
        /// <paramref name="maxCreateRevision"/> is left: every contender queued ahead is gone.
        /// Re-checks after each entry this member applies (etcd's waitDeletes watches for each delete).
        /// </summary>
        public Task WaitDeletesAsync(ByteString prefix, long maxCreateRevision, CancellationToken cancellationToken) =>
            WaitUntilAsync(() => Range(new RangeRequest
            {
                Key = prefix,
                RangeEnd = PrefixEnd(prefix),
                Limit = 1,
                MaxCreateRevision = maxCreateRevision,
                SortTarget = RangeRequest.Types.SortTarget.Create,
                SortOrder = RangeRequest.Types.SortOrder.Descend,
            }).Kv is null, cancellationToken);

        /// <summary>Re-evaluates <paramref name="done"/> after every applied entry until it holds.</summary>
        public async Task WaitUntilAsync(Func<bool> done, CancellationToken cancellationToken)
        {
            while (true)
            {
                // The position is taken before the check: a change applied after it wakes the wait.
                long position = face.Shard.AppliedPosition;
                if (done()) return;
                await face.Shard.WaitAppliedBeyondAsync(position, cancellationToken).ConfigureAwait(false);
            }
        }

        private (KeyValue? Kv, ResponseHeader Header) Range(RangeRequest request)
        {
            face.CheckRead(user, request.Key, request.RangeEnd);
            var (error, response) = face.Shard.Read(txn => (RangeExecutor.Execute(txn, request, out var r), r));
            Ok(error);
            face.Fill(response!.Header);
            return (response.Kvs.Count > 0 ? response.Kvs[0] : null, response.Header);
        }

        private static ByteString PrefixEnd(ByteString prefix)
        {
            byte[] end = prefix.ToByteArray();
            for (int i = end.Length - 1; i >= 0; i--)
            {
                if (end[i] < 0xff)
                {
                    end[i]++;
                    return ByteString.CopyFrom(end, 0, i + 1);
                }
            }
            return ByteString.CopyFrom(0); // every key after the prefix
        }
    }
}
