using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;

namespace KvJournal.LoadHarness;

/// <summary>A paged LIST as kube-apiserver sends it: limit, the first page's revision, the last key + "\0" to continue.</summary>
public static class PagedList
{
    /// <summary>Lists [<paramref name="from"/>, <paramref name="end"/>) keeping nothing; <paramref name="pageDone"/> gets each page's start timestamp. Returns the keys listed.</summary>
    public static async Task<int> CountAsync(KV.KVClient kv, ByteString from, ByteString end, int limit, Action<long>? pageDone = null)
    {
        long revision = 0;
        int listed = 0;
        while (true)
        {
            long start = Stopwatch.GetTimestamp();
            var page = await kv.RangeAsync(new RangeRequest { Key = from, RangeEnd = end, Limit = limit, Revision = revision });
            pageDone?.Invoke(start);
            revision = page.Header.Revision;
            listed += page.Kvs.Count;
            if (!page.More) return listed;
            from = ByteString.CopyFrom([.. page.Kvs[^1].Key.Span, 0]);
        }
    }
}
