using BenchmarkDotNet.Attributes;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Member.Propose;
using KvJournal.Protos.Journal;
using Mvccpb;

namespace KvJournal.Benchmarks.Wire;

/// <summary>
/// The per-request encoding work: a put as it arrives and as it is journaled, and a page of 500
/// objects of 1 KiB as a list answers it (kube-apiserver's default page).
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("Wire")]
public class EncodingBenchmarks
{
    private byte[] _putBytes = [];
    private JournalEntry _entry = null!;
    private byte[] _entryBytes = [];
    private RangeResponse _page = null!;
    private byte[] _pageBytes = [];

    [GlobalSetup]
    public void Setup()
    {
        var put = new PutRequest { Key = ByteString.CopyFromUtf8("/registry/pods/default/web-7d4b9c8f5-x2k8q"), Value = ByteString.CopyFrom(new byte[1024]), PrevKv = false };
        _putBytes = put.ToByteArray();
        _entry = new JournalEntry { MemberId = 42, RequestId = 1 << 20, Put = put };
        _entryBytes = JournalEntryCodec.Encode(_entry);
        _page = new RangeResponse { Header = new ResponseHeader { ClusterId = 1, MemberId = 2, Revision = 123456, RaftTerm = 1 }, Count = 10_000, More = true };
        for (int i = 0; i < 500; i++)
        {
            _page.Kvs.Add(new KeyValue
            {
                Key = ByteString.CopyFromUtf8($"/registry/pods/default/pod-{i:D6}"),
                Value = ByteString.CopyFrom(new byte[1024]),
                CreateRevision = 1000 + i,
                ModRevision = 2000 + i,
                Version = 3,
            });
        }
        _pageBytes = _page.ToByteArray();
    }

    [Benchmark]
    public PutRequest ParsePutRequest() => PutRequest.Parser.ParseFrom(_putBytes);

    [Benchmark]
    public byte[] EncodeJournalEntry() => JournalEntryCodec.Encode(_entry);

    [Benchmark]
    public JournalEntry DecodeJournalEntry() => JournalEntryCodec.Decode(_entryBytes).Entry!;

    [Benchmark(Description = "encode a 500-object page")]
    public byte[] EncodeRangePage() => _page.ToByteArray();

    [Benchmark(Description = "parse a 500-object page (the client's side)")]
    public RangeResponse ParseRangePage() => RangeResponse.Parser.ParseFrom(_pageBytes);
}
