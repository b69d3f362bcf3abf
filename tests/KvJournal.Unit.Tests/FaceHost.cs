using Google.Protobuf;
using KvJournal.Journal.Embedded;
using KvJournal.Member.Face;
using KvJournal.Member.Shards;

namespace KvJournal.Unit.Tests;

/// <summary>
/// A shard's face hosted in-process over a real embedded journal in a temp dir: what the gRPC
/// services and the JSON gateway call, without a process or a socket, so a behaviour test runs
/// in milliseconds. The wire tests and the differential tests against etcd stay the oracle.
/// </summary>
public sealed class FaceHost : IAsyncDisposable
{
    private readonly string _dir;
    private readonly FasterLogJournal _journal;

    public Shard Shard { get; }

    public ShardServer Face { get; }

    private FaceHost(string dir, FasterLogJournal journal, Shard shard)
    {
        _dir = dir;
        _journal = journal;
        Shard = shard;
        Face = new ShardServer(shard, new ShardServerOptions(MaxTxnOps: 128, WatchFragmentAboveBytes: 2 * 1024 * 1024, ScratchDir: dir));
    }

    public static async Task<FaceHost> StartAsync(TimeProvider? time = null)
    {
        string dir = Path.Combine(Path.GetTempPath(), "kvjournal-face-" + Guid.NewGuid().ToString("N"));
        var journal = new FasterLogJournal(Path.Combine(dir, "journal"), 64 * 1024);
        var shard = await Shard.OpenAsync(journal, new ShardOptions(1, 1536 * 1024, TimeSpan.FromMinutes(10)) { Time = time ?? TimeProvider.System }, CancellationToken.None);
        return new FaceHost(dir, journal, shard);
    }

    public static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    public async ValueTask DisposeAsync()
    {
        await Shard.CloseAsync();
        await _journal.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }
}
